"""Every market endpoint in replay mode (the replay universe's real bars, offline), labelled `replay`, and a walk
of the OpenAPI document that calls every route and validates each body against the document."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client
from jsonschema import Draft202012Validator

import app as app_module
from infra.local.replay.transport import YahooReplayTransport
from infra.local.token import issue_dev_token
from tests.fakes import replay_universe as universe_data

SAMPLE_PATH_VALUES = {"symbol": "AAPL", "job_name": "refresh_indices"}
SAMPLE_QUERIES = {"/api/v1/market/quotes": "?symbols=AAPL,MSFT,NOPE"}
SAMPLE_BODIES = {"/api/v1/market/search": {"query": "apple", "limit": 5}}


def _auth() -> dict[str, str]:
    # An operator's token (the operators group), so the operator endpoints are reachable too.
    return {"Authorization": f"Bearer {issue_dev_token(operator=True)}"}


def _call(client: Client, path: str, method: str, values: dict[str, str]) -> tuple[int, Any]:
    url = path
    for name, value in values.items():
        url = url.replace("{" + name + "}", value)
    url += SAMPLE_QUERIES.get(path, "")
    if method == "post" and path in SAMPLE_BODIES:
        response = client.http.post(
            url, body=json.dumps(SAMPLE_BODIES[path]), headers={**_auth(), "Content-Type": "application/json"}
        )
    elif method == "post":
        response = client.http.post(url, headers=_auth())
    else:
        response = client.http.get(url, headers=_auth())
    return response.status_code, json.loads(response.body)


def test_every_documented_route_answers_2xx_with_a_body_valid_against_the_document(client: Client) -> None:
    document = json.loads(client.http.get("/api/v1/openapi.json").body)
    Draft202012Validator.check_schema({"$defs": document["components"]["schemas"]})
    run = client.http.post("/api/v1/market/jobs/refresh_indices/run", headers=_auth())
    values = {**SAMPLE_PATH_VALUES, "task_id": json.loads(run.body)["task_id"]}
    checked = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            status, body = _call(client, path, method, values)
            assert 200 <= status < 300, (path, method, body)
            schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            validator = Draft202012Validator({**document, **schema})
            errors = sorted(validator.iter_errors(body), key=str)
            assert not errors, (path, [e.message for e in errors[:3]])
            checked.append(f"{method.upper()} {path}")
    assert len(checked) == len(app_module.ROUTES) == 17


def _sources(value: Any) -> set[str]:
    """Every `source` field anywhere in a payload."""
    found: set[str] = set()
    if isinstance(value, dict):
        if isinstance(value.get("source"), str):
            found.add(value["source"])
        for item in value.values():
            found |= _sources(item)
    elif isinstance(value, list):
        for item in value:
            found |= _sources(item)
    return found


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/market/quote/AAPL",
        "/api/v1/market/quotes?symbols=AAPL,MSFT",
        "/api/v1/market/indices",
        "/api/v1/market/sectors",
        "/api/v1/market/movers?type=gainers&limit=5",
        "/api/v1/market/movers?type=losers",
        "/api/v1/market/movers?type=actives",
        "/api/v1/market/sentiment",
        "/api/v1/market/overview",
        "/api/v1/market/historical/AAPL?period=1y&interval=1d",
        "/api/v1/market/profile/AAPL",
        "/api/v1/market/news/AAPL?limit=3",
    ],
)
def test_replay_payloads_are_labelled_replay_with_their_replay_day(
    client: Client, path: str, replay_transport: YahooReplayTransport
) -> None:
    response = client.http.get(path, headers=_auth())
    assert response.status_code == 200, response.body
    body = json.loads(response.body)
    assert _sources(body) == {"replay"}
    # Every payload says which replayed trading day it belongs to (one day for the whole response).
    assert _replay_days(body) == {replay_transport.replay_day().isoformat()}


def _replay_days(value: Any) -> set[str]:
    """Every provenance block's `replay_day` (a payload, or the parts of /overview)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "source" in value and "replay_day" in value:
            found.add(value["replay_day"])
        for item in value.values():
            found |= _replay_days(item)
    elif isinstance(value, list):
        for item in value:
            found |= _replay_days(item)
    return found


def test_second_read_is_a_cache_hit(client: Client) -> None:
    first = json.loads(client.http.get("/api/v1/market/profile/AAPL", headers=_auth()).body)
    second = json.loads(client.http.get("/api/v1/market/profile/AAPL", headers=_auth()).body)
    assert (first["cached"], second["cached"]) == (False, True)
    assert first["retrieved_at"] == second["retrieved_at"]
    stats = json.loads(client.http.get("/api/v1/market/cache/stats", headers=_auth()).body)
    assert stats["kinds"]["profile"] == {"hits": 1, "misses": 1, "hit_rate": 0.5, "writes": 1}


def test_movers_limit_slices_the_cached_list(client: Client) -> None:
    five = json.loads(client.http.get("/api/v1/market/movers?type=gainers&limit=5", headers=_auth()).body)
    two = json.loads(client.http.get("/api/v1/market/movers?type=gainers&limit=2", headers=_auth()).body)
    assert len(five["movers"]) == 5
    assert two["movers"] == five["movers"][:2]
    assert two["cached"] is True


def test_indices_are_all_five_from_their_series(client: Client) -> None:
    body = json.loads(client.http.get("/api/v1/market/indices", headers=_auth()).body)
    served = {q["symbol"]: q for q in body["indices"]}
    assert served["^GSPC"]["indexName"] == "S&P 500"
    assert set(served) == {"^GSPC", "^DJI", "^IXIC", "^RUT", "^VIX"}
    assert body["unavailable"] == []
    for symbol, quote in served.items():
        assert quote["price"] == universe_data.close(symbol, universe_data.DEFAULT_DAY_INDEX)


def test_sectors_come_from_the_ten_spdrs_and_say_why_communication_services_is_missing(client: Client) -> None:
    body = json.loads(client.http.get("/api/v1/market/sectors", headers=_auth()).body)
    priced = {s["etf"]: s for s in body["sectors"] if s["changePercent"] is not None}
    assert len(priced) == 10
    for etf, sector in priced.items():
        assert sector["price"] == universe_data.close(etf, universe_data.DEFAULT_DAY_INDEX)
    assert body["unavailable"] == ["Communication Services"]
    assert "XLC" in body["unavailable_reasons"]["Communication Services"]


def test_every_mover_can_be_quoted_that_day(client: Client) -> None:
    named: set[str] = set()
    for kind in ("gainers", "losers", "actives"):
        body = json.loads(client.http.get(f"/api/v1/market/movers?type={kind}&limit=25", headers=_auth()).body)
        named |= {mover["symbol"] for mover in body["movers"]}
    assert len(named) > 25
    ordered = sorted(named)
    for start in range(0, len(ordered), 50):
        chunk = ",".join(ordered[start : start + 50])
        quotes = json.loads(client.http.get(f"/api/v1/market/quotes?symbols={chunk}", headers=_auth()).body)
        assert [item.get("error") for item in quotes["quotes"]] == [None] * len(quotes["quotes"])


def test_sentiment_shows_its_formula_and_inputs(client: Client) -> None:
    body = json.loads(client.http.get("/api/v1/market/sentiment", headers=_auth()).body)
    assert 0 <= body["score"] <= 100
    assert {c["name"] for c in body["components"]} == {"vix", "sp500_momentum", "sector_breadth"}
    assert "clamp" in body["formula"]
    assert any(c["score"] is not None for c in body["components"])


def test_search_answers_from_providers_or_the_bundled_list(client: Client) -> None:
    response = client.http.post(
        "/api/v1/market/search",
        body=json.dumps({"query": "Apple", "limit": 3}),
        headers={**_auth(), "Content-Type": "application/json"},
    )
    body = json.loads(response.body)
    assert response.status_code == 200
    assert body["query"] == "apple"
    assert "AAPL" in [r["symbol"] for r in body["results"]]


def test_unknown_symbol_profile_is_404(client: Client) -> None:
    response = client.http.get("/api/v1/market/profile/ZZZZZZ", headers=_auth())
    assert response.status_code == 404
    assert json.loads(response.body)["error"]["code"] == "symbol_not_found"


@pytest.mark.parametrize(
    "path", ["/api/v1/market/historical/APTV?period=1y&interval=1d", "/api/v1/market/profile/APTV"]
)
def test_a_symbol_not_yet_listed_is_a_404_saying_so_for_history_and_profile(client: Client, path: str) -> None:
    day = universe_data.DEFAULT_DAY_INDEX
    assert universe_data.first_day_index("APTV") > day
    response = client.http.get(path, headers=_auth())
    assert response.status_code == 404
    error = json.loads(response.body)["error"]
    assert error["code"] == "symbol_not_found"
    assert f"APTV was not yet listed on {universe_data.trading_days()[day]}" in error["message"]


@pytest.mark.parametrize(
    ("path", "what"),
    [("/api/v1/market/profile/^GSPC", "a profile for ^GSPC"),
     ("/api/v1/market/historical/AAPL?period=1d&interval=1m", "1d/1m history for AAPL")],
)  # fmt: skip
def test_data_no_provider_holds_is_a_404_naming_it_not_a_503(
    client: Client, auth_headers: dict[str, str], path: str, what: str
) -> None:
    # GIVEN the replay, which has no profile for an index and no intraday bars (Yahoo's no-data shapes)
    response = client.http.get(path, headers=auth_headers)
    # THEN the answer is definitive: a 404 saying what is missing, never a 503 inviting a retry
    assert response.status_code == 404, response.body
    error = json.loads(response.body)["error"]
    assert error["code"] == "not_found"
    assert f"no provider holds {what}" in error["message"]
    providers = json.loads(client.http.get("/api/v1/market/providers", headers=auth_headers).body)["providers"]
    assert next(p for p in providers if p["name"] == "yahoo")["breaker_state"] == "closed"
