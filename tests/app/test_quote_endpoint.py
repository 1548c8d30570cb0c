"""GET /api/v1/market/quote/{symbol} through the Chalice app, served offline from the replay universe."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from chalice.test import Client

from infra.local.replay.transport import YahooReplayTransport
from infra.local.token import issue_dev_token
from tests.conftest import REPO_ROOT
from tests.fakes import replay_universe as universe_data

QUOTE = "/api/v1/market/quote/"


def body_of(response: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(response.body)
    return parsed


def assert_standard_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    error = body_of(response)["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"]
    assert response.headers["Content-Type"] == "application/json"
    return dict(error)


def test_quote_is_served_from_replay_and_labelled(client: Client, auth_headers: dict[str, str]) -> None:
    response = client.http.get(QUOTE + "AAPL", headers=auth_headers)

    assert response.status_code == 200
    quote = body_of(response)
    assert quote["symbol"] == "AAPL"
    assert quote["source"] == "replay"
    assert (quote["cached"], quote["stale"]) == (False, False)
    # The spec's quote fields: the replay day's bar and the day before's close, as in the CSV.
    day = universe_data.DEFAULT_DAY_INDEX
    today = universe_data.row("AAPL", day)
    assert today is not None
    previous_close = universe_data.close("AAPL", day - 1)
    assert (quote["price"], quote["previousClose"], quote["volume"]) == (
        float(today["close"]),
        previous_close,
        int(today["volume"]),
    )
    assert quote["change"] == pytest.approx(float(today["close"]) - previous_close)
    assert quote["changePercent"] == pytest.approx(universe_data.change_percent("AAPL", day))
    # Frozen replay: the quote is as of the replay day's close (16:00 New York).
    assert quote["as_of"].startswith(today["date"])
    assert "retrieved_at" in quote
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_second_call_is_a_cache_hit_visible_in_the_counters(client: Client, auth_headers: dict[str, str]) -> None:
    client.http.get(QUOTE + "AAPL", headers=auth_headers)
    second = body_of(client.http.get(QUOTE + "AAPL", headers=auth_headers))
    operator = {"Authorization": f"Bearer {issue_dev_token('ops', operator=True)}"}
    stats = body_of(client.http.get("/api/v1/market/cache/stats", headers=operator))

    assert (second["cached"], second["source"]) == (True, "replay")
    assert stats["available"] is True
    assert stats["kinds"]["quote"] == {"hits": 1, "misses": 1, "hit_rate": 0.5, "writes": 1}


def test_lowercase_symbol_is_normalized(client: Client, auth_headers: dict[str, str]) -> None:
    assert body_of(client.http.get(QUOTE + "aapl", headers=auth_headers))["symbol"] == "AAPL"


def test_only_one_upstream_call_for_repeated_requests(
    client: Client, auth_headers: dict[str, str], replay_transport: YahooReplayTransport
) -> None:
    for _ in range(5):
        assert client.http.get(QUOTE + "MSFT", headers=auth_headers).status_code == 200
    assert sum("/v7/finance/quote" in url for url in replay_transport.requests_seen) == 1


@pytest.mark.parametrize(
    "raw_symbol",
    [
        "..%2Fetc",
        "..",
        "A" * 40,
        "%01AAPL",
        "AAPL%00",
        "AA%20PL",
        "$AAPL",
        "AAPL%3BDROP",
        "%E2%82%AC",
    ],
)
def test_garbage_symbols_are_a_clear_400(client: Client, auth_headers: dict[str, str], raw_symbol: str) -> None:
    error = assert_standard_error(client.http.get(QUOTE + raw_symbol, headers=auth_headers), 400, "validation_error")
    assert "symbol" in error["message"]


def test_well_formed_unknown_symbol_is_a_helpful_404(client: Client, auth_headers: dict[str, str]) -> None:
    error = assert_standard_error(client.http.get(QUOTE + "ZZZZZ", headers=auth_headers), 404, "symbol_not_found")
    assert "ZZZZZ" in error["message"]
    assert "/api/v1/market/search" in error["message"]


def test_every_company_of_the_universe_is_quoted(client: Client, auth_headers: dict[str, str]) -> None:
    # JPM had no recording in the old replay (a 503); the universe has its bars.
    day = universe_data.DEFAULT_DAY_INDEX
    for symbol in ("JPM", "GOOGL", "BRK-B", "FB"):
        response = client.http.get(QUOTE + symbol, headers=auth_headers)
        assert response.status_code == 200, response.body
        assert body_of(response)["price"] == universe_data.close(symbol, day)


def test_a_symbol_not_yet_listed_on_the_replay_day_is_a_404_saying_so(
    client: Client, auth_headers: dict[str, str]
) -> None:
    day = universe_data.DEFAULT_DAY_INDEX
    assert universe_data.first_day_index("APTV") > day
    response = client.http.get(QUOTE + "APTV", headers=auth_headers)
    error = assert_standard_error(response, 404, "symbol_not_found")
    assert f"APTV was not yet listed on {universe_data.trading_days()[day]}" in error["message"]
    # Not a vendor failure: the replay's breaker stays closed and later quotes still work.
    for _ in range(8):
        client.http.get(QUOTE + "APTV", headers=auth_headers)
    assert client.http.get(QUOTE + "AAPL", headers=auth_headers).status_code == 200


def test_wrong_method_gets_the_standard_error_body(client: Client, auth_headers: dict[str, str]) -> None:
    assert_standard_error(client.http.post(QUOTE + "AAPL", headers=auth_headers), 405, "method_not_allowed")


def test_cache_and_metrics_report_through_emf(
    client: Client, auth_headers: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    client.http.get(QUOTE + "AAPL", headers=auth_headers)
    client.http.get(QUOTE + "AAPL", headers=auth_headers)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = [metric["Name"] for blob in emitted for d in blob["_aws"]["CloudWatchMetrics"] for metric in d["Metrics"]]
    assert names.count("CacheMiss") == 1
    assert names.count("CacheHit") == 1
    assert names.count("ProviderCall") == 1
    hit = next(blob for blob in emitted if "CacheHit" in blob)
    assert hit["kind"] == "quote"
    # Published per kind and rolled up under the service alone (what the hit-rate alarm reads).
    assert hit["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "kind"], ["service"]]
    requests = next(blob for blob in emitted if "Requests" in blob)
    assert requests["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service", "route"], ["service"]]


def test_a_metric_that_cannot_be_emitted_never_fails_the_request(
    client: Client, auth_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf import cloudwatch

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("stdout closed")

    monkeypatch.setattr(cloudwatch.AmazonCloudWatchEMFProvider, "flush_metrics", broken)
    assert client.http.get(QUOTE + "AAPL", headers=auth_headers).status_code == 200


def test_importing_the_app_does_not_load_yfinance_or_pandas() -> None:
    """Cold start: a request that never reaches Yahoo must not pay for pandas."""
    code = "import sys, app; heavy = [m for m in ('yfinance', 'pandas', 'numpy') if m in sys.modules]; print(heavy)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
