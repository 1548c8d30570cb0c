"""The fallback chain, end to end: real adapters, real Redis (quotas, breakers, cache), and failures
injected at the HTTP layer (statuses, timeouts, garbage bodies). Nothing in the service is patched."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import requests
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.adapters.redis_cache import RedisCache
from chalicelib.errors import ServiceUnavailable, SymbolNotFound
from chalicelib.models.market import Quote
from chalicelib.services.market_data import stored_document
from chalicelib.settings import load_settings
from infra.local.replay.transport import CannedResponse
from infra.local.token import issue_dev_token
from tests.fakes.vendors_http import (
    TRUNCATED_JSON,
    VendorTransport,
    vendor_recording,
    yahoo_recording,
)

KEYS = {
    "FINANCIAL_MODELING_PREP_API_KEY": "fmp-secret-key-123",
    "ALPHA_VANTAGE_API_KEY": "av-secret-key-456",
    "TIINGO_API_KEY": "tiingo-secret-key-789",
}
PREFIX = "chain:"


def make_container(redis_url: str, tmp_path: Path, transport: VendorTransport, **env: str) -> bootstrap.Container:
    settings = load_settings(
        {
            "STAGE": "local",
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": PREFIX,
            "YFINANCE_CACHE_DIR": str(tmp_path / "yfinance"),
            "PROVIDER_RETRY_BASE_SECONDS": "0",
            "PROVIDER_RETRY_MAX_SECONDS": "0",
            **KEYS,
            **env,
        }
    )
    return bootstrap.Container(settings, http_transport=transport)


@pytest.fixture
def transport() -> VendorTransport:
    return VendorTransport()


@pytest.fixture
def container(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, transport: VendorTransport
) -> bootstrap.Container:
    return make_container(redis_url, tmp_path, transport)


@pytest.fixture
def api(container: bootstrap.Container) -> Iterator[Client]:
    bootstrap.use_container(container)
    with Client(app_module.app, stage_name="local") as client:
        yield client
    bootstrap.use_container(None)


def _get(api: Client, path: str) -> tuple[int, dict[str, object], dict[str, str]]:
    response = api.http.get(path, headers={"Authorization": f"Bearer {issue_dev_token()}"})
    return response.status_code, json.loads(response.body), dict(response.headers)


YAHOO_AAPL = yahoo_recording("quote_AAPL")
FMP_AAPL = vendor_recording("fmp", "quote_stable_AAPL")


def test_yahoo_answers_first_and_nobody_else_is_asked(api: Client, transport: VendorTransport) -> None:
    transport.answer("yahoo", YAHOO_AAPL).answer("fmp", FMP_AAPL)
    status, body, _ = _get(api, "/api/v1/market/quote/AAPL")
    assert status == 200
    assert body["source"] == "yahoo"
    assert transport.calls == {"yahoo": 1}


@pytest.mark.parametrize(
    "failure",
    [CannedResponse(503, b'{"finance":{"error":{"code":"x","description":"down"}}}'), requests.ReadTimeout("slow"),
     requests.ConnectionError("reset")],
    ids=["http-503", "timeout", "connection-reset"],
)  # fmt: skip
def test_transient_failures_are_retried_then_the_next_vendor_serves(
    api: Client, transport: VendorTransport, failure: CannedResponse | Exception
) -> None:
    transport.answer("yahoo", failure).answer("fmp", FMP_AAPL)
    status, body, _ = _get(api, "/api/v1/market/quote/AAPL")
    assert status == 200
    assert body["source"] == "fmp"
    assert body["price"] == json.loads(FMP_AAPL.body)[0]["price"]
    # 3 = PROVIDER_MAX_ATTEMPTS. yfinance itself repeats a request once (with its other cookie
    # strategy) when Yahoo answers an HTTP error, so an HTTP 503 costs two requests per attempt.
    per_attempt = 2 if isinstance(failure, CannedResponse) else 1
    assert transport.calls == {"yahoo": 3 * per_attempt, "fmp": 1}


@pytest.mark.parametrize(
    "failure",
    [
        CannedResponse(429, b"Too Many Requests", "text/plain"),
        CannedResponse(200, b"<html><body>consent page</body></html>", "text/html"),
        TRUNCATED_JSON,
        CannedResponse(200, b"not json at all", "text/plain"),
    ],
    ids=["http-429", "html-page", "truncated-json", "wrong-content-type"],
)
def test_rate_limits_and_garbage_move_on_at_once_without_retrying(
    api: Client, transport: VendorTransport, failure: CannedResponse
) -> None:
    transport.answer("yahoo", failure).answer("fmp", FMP_AAPL)
    status, body, _ = _get(api, "/api/v1/market/quote/AAPL")
    assert status == 200
    assert body["source"] == "fmp"
    # One attempt; yfinance's own cookie-strategy repeat doubles the request on an HTTP error status.
    assert transport.calls == {"yahoo": 2 if failure.status >= 400 else 1, "fmp": 1}


def test_an_unknown_symbol_costs_one_upstream_call_and_is_a_404(api: Client, transport: VendorTransport) -> None:
    transport.answer("yahoo", yahoo_recording("quote_SIX_unknown_symbol_empty")).answer("fmp", FMP_AAPL)
    status, body, _ = _get(api, "/api/v1/market/quote/SIX")
    assert status == 404
    assert body["error"]["code"] == "symbol_not_found"  # type: ignore[index]
    assert "search" in body["error"]["message"]  # type: ignore[index]
    assert transport.calls == {"yahoo": 1}


def test_a_vendors_reason_for_an_unknown_symbol_reaches_the_404_and_is_no_failure(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, transport: VendorTransport
) -> None:
    # The replay's shape for a symbol not yet listed on its day: left out, with a "Not Found" error saying why.
    reason = "APTV was not yet listed on 2017-08-02 (replay)"
    answer = {"quoteResponse": {"result": [], "error": {"code": "Not Found", "description": reason}}}
    # No negative cache here: each of the 4 requests must reach the vendor for the breaker to see 4 verdicts.
    container = make_container(
        redis_url, tmp_path, transport, BREAKER_FAILURE_THRESHOLD="2", NEGATIVE_CACHE_TTL_SECONDS="0"
    )
    transport.answer("yahoo", CannedResponse(200, json.dumps(answer).encode())).answer("fmp", FMP_AAPL)
    bootstrap.use_container(container)
    try:
        with Client(app_module.app, stage_name="local") as api:
            for _ in range(4):
                status, body, _ = _get(api, "/api/v1/market/quote/APTV")
                assert status == 404
                assert reason in body["error"]["message"]  # type: ignore[index]
    finally:
        bootstrap.use_container(None)
    assert transport.calls == {"yahoo": 4}, "the vendor's not-found ends the walk: nobody else is asked"
    status_of = {p.name: p for p in container.provider_status.status(detail=True).providers}["yahoo"]
    assert status_of.breaker_state == "closed"


def test_when_every_vendor_fails_the_answer_is_503_with_retry_after_and_no_key_leaks(
    api: Client, transport: VendorTransport
) -> None:
    for vendor in ("yahoo", "fmp", "alpha_vantage", "tiingo"):
        transport.answer(vendor, CannedResponse(500, b"internal error", "text/plain"))
    status, body, headers = _get(api, "/api/v1/market/quote/IBM")
    assert status == 503
    assert body["error"]["code"] == "service_unavailable"  # type: ignore[index]
    assert int(headers["Retry-After"]) > 0
    assert set(transport.calls) == {"yahoo", "fmp", "alpha_vantage", "tiingo"}
    text = json.dumps(body)
    assert not any(key in text for key in KEYS.values())


def test_a_stale_copy_is_served_when_every_vendor_fails(
    api: Client, transport: VendorTransport, container: bootstrap.Container, redis_client: redis.Redis
) -> None:
    quote = Quote(symbol="AAPL", price=101.5, as_of=datetime(2025, 2, 14, 21, 0, tzinfo=UTC))
    stored = stored_document(quote, "yahoo", datetime(2025, 2, 14, 21, 0, 5, tzinfo=UTC))
    RedisCache(redis_client, key_prefix=PREFIX).set("quote:AAPL", stored, fresh_ttl_seconds=0, stale_ttl_seconds=3600)
    for vendor in ("yahoo", "fmp", "alpha_vantage", "tiingo"):
        transport.answer(vendor, requests.ConnectionError("down"))
    status, body, _ = _get(api, "/api/v1/market/quote/AAPL")
    assert status == 200
    assert (body["price"], body["stale"], body["cached"], body["source"]) == (101.5, True, True, "yahoo")


def test_a_failing_vendor_is_opened_by_the_breaker_skipped_then_probed(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, transport: VendorTransport
) -> None:
    container = make_container(
        redis_url, tmp_path, transport,
        PROVIDER_MAX_ATTEMPTS="1", BREAKER_FAILURE_THRESHOLD="2", BREAKER_COOLDOWN_SECONDS="0.5",
    )  # fmt: skip
    service = container.market_data
    transport.answer("yahoo", CannedResponse(502, b"bad gateway", "text/plain")).answer("fmp", FMP_AAPL)

    for _ in range(2):
        assert service.refresh_quotes(["AAPL"])["AAPL"].provenance.source == "fmp"
    # Two failed calls (each two requests: yfinance repeats once on an HTTP error status).
    assert transport.calls == {"yahoo": 4, "fmp": 2}
    status = {p.name: p for p in container.provider_status.status(detail=True).providers}["yahoo"]
    assert status.breaker_state == "open"
    # The error's code, not the vendor's words (those are in the logs only).
    assert status.last_error == "provider_unavailable"

    assert service.refresh_quotes(["AAPL"])["AAPL"].provenance.source == "fmp"
    assert transport.calls["yahoo"] == 4, "open breaker: Yahoo is skipped without a request"

    time.sleep(0.6)
    transport.answer("yahoo", YAHOO_AAPL)
    assert service.refresh_quotes(["AAPL"])["AAPL"].provenance.source == "yahoo", "half-open probe succeeds"
    assert transport.calls["yahoo"] == 5
    status = {p.name: p for p in container.provider_status.status(detail=True).providers}["yahoo"]
    assert status.breaker_state == "closed"


def test_an_exhausted_shared_quota_skips_the_vendor_without_waiting(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, transport: VendorTransport
) -> None:
    container = make_container(redis_url, tmp_path, transport, YAHOO_QUOTA_PER_DAY="1")
    transport.answer("yahoo", YAHOO_AAPL).answer("fmp", FMP_AAPL)
    service = container.market_data
    started = time.monotonic()
    assert service.refresh_quotes(["AAPL"])["AAPL"].provenance.source == "yahoo"
    assert service.refresh_quotes(["AAPL"])["AAPL"].provenance.source == "fmp"
    assert time.monotonic() - started < 5
    assert transport.calls == {"yahoo": 1, "fmp": 1}
    yahoo = {p.name: p for p in container.provider_status.status(detail=True).providers}["yahoo"]
    assert yahoo.quota_day is not None
    assert (yahoo.quota_day.used, yahoo.quota_day.remaining) == (1, 0)


@pytest.mark.parametrize("count", [50, 500])
def test_batch_refresh_uses_as_few_upstream_calls_as_the_vendor_allows(
    container: bootstrap.Container, transport: VendorTransport, count: int
) -> None:
    symbols = [f"S{i:03d}" for i in range(count - 1)] + ["AAPL"]
    transport.answer("yahoo", YAHOO_AAPL)
    refreshed = container.market_data.refresh_quotes(symbols)
    assert set(refreshed) == {"AAPL"}
    yahoo = container.providers[0]
    assert transport.calls == {"yahoo": math.ceil(count / yahoo.max_symbols_per_quote_call)}


@pytest.mark.parametrize("count", [50, 500])
def test_when_yahoo_is_down_fmp_batches_too(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, transport: VendorTransport, count: int
) -> None:
    container = make_container(
        redis_url, tmp_path, transport, PROVIDER_MAX_ATTEMPTS="1", BREAKER_FAILURE_THRESHOLD="1000"
    )
    symbols = [f"S{i:03d}" for i in range(count - 1)] + ["AAPL"]
    transport.answer("yahoo", requests.ConnectionError("down")).answer("fmp", FMP_AAPL)
    refreshed = container.market_data.refresh_quotes(symbols)
    assert refreshed["AAPL"].provenance.source == "fmp"
    fmp = container.providers[1]
    yahoo = container.providers[0]
    assert transport.calls == {
        "yahoo": math.ceil(count / yahoo.max_symbols_per_quote_call),
        "fmp": math.ceil(count / fmp.max_symbols_per_quote_call),
    }


def test_fifty_concurrent_misses_on_one_symbol_make_one_upstream_call(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    transport = VendorTransport(delay_seconds=0.3).answer("yahoo", YAHOO_AAPL)
    container = make_container(redis_url, tmp_path, transport)
    service = container.market_data

    with ThreadPoolExecutor(max_workers=50) as pool:
        quotes = list(pool.map(lambda _: service.get_quote("AAPL"), range(50)))

    assert transport.calls == {"yahoo": 1}
    assert {q.payload.price for q in quotes} == {
        json.loads(YAHOO_AAPL.body)["quoteResponse"]["result"][0]["regularMarketPrice"]
    }
    assert sum(1 for q in quotes if not q.provenance.cached) == 1


def test_batch_endpoint_reports_per_symbol_errors_inside_a_200(api: Client, transport: VendorTransport) -> None:
    transport.answer("yahoo", YAHOO_AAPL)
    status, body, _ = _get(api, "/api/v1/market/quotes?symbols=AAPL,NOPE,aapl")
    assert status == 200
    items = {item["symbol"]: item for item in body["quotes"]}  # type: ignore[attr-defined]
    assert [item["symbol"] for item in body["quotes"]] == ["AAPL", "NOPE"]  # type: ignore[attr-defined]
    assert items["AAPL"]["quote"]["source"] == "yahoo"
    assert items["NOPE"]["error"]["code"] == "symbol_not_found"
    assert transport.calls == {"yahoo": 1}, "one upstream call for the whole batch"


def test_batch_endpoint_refuses_a_malformed_entry_with_a_400_naming_it(api: Client, transport: VendorTransport) -> None:
    # The OpenAPI document declares each entry's pattern, so a malformed one fails the whole request.
    status, body, _ = _get(api, "/api/v1/market/quotes?symbols=AAPL,bad$sym")
    assert status == 400
    error = body["error"]
    assert isinstance(error, dict)
    assert str(error["message"]).startswith("symbols: entry 2: symbol 'bad$sym' is not a valid ticker")
    assert transport.calls == {}


def test_service_raises_typed_errors(container: bootstrap.Container, transport: VendorTransport) -> None:
    transport.answer("yahoo", yahoo_recording("quote_SIX_unknown_symbol_empty"))
    with pytest.raises(SymbolNotFound):
        container.market_data.get_quote("SIX")
    for vendor in ("yahoo", "fmp", "alpha_vantage", "tiingo"):
        transport.answer(vendor, requests.ConnectionError("down"))
    with pytest.raises(ServiceUnavailable):
        container.market_data.get_quote("MSFT")


def test_search_with_no_provider_reachable_answers_from_the_bundled_sp500_list(
    api: Client, transport: VendorTransport
) -> None:
    for vendor in ("yahoo", "fmp", "alpha_vantage", "tiingo"):
        transport.answer(vendor, requests.ConnectionError("offline"))
    response = api.http.post(
        "/api/v1/market/search",
        body=json.dumps({"query": "micro", "limit": 5}),
        headers={"Authorization": f"Bearer {issue_dev_token()}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    body = json.loads(response.body)
    assert body["source"] == "sp500-constituents"
    symbols = [r["symbol"] for r in body["results"]]
    assert "MSFT" in symbols
    assert "MU" in symbols
    assert all(r["sector"] for r in body["results"])
