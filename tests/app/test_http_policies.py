"""Cross-cutting REST policies: per-user rate limits, CORS, input validation, the OpenAPI document."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.http_api import PUBLIC_RESOURCES
from chalicelib.settings import load_settings
from infra.local.replay.transport import YahooReplayTransport
from infra.local.token import issue_dev_token

DASHBOARD = "https://dashboard.example.com"


@pytest.fixture
def strict_client(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> Iterator[Client]:
    """Replay data, a per-user limit of 3 requests a minute, one allowed dashboard origin."""
    settings = load_settings(
        {
            "STAGE": "local",
            "MARKET_DATA_SOURCE": "replay",
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": "pol:",
            "YFINANCE_CACHE_DIR": str(tmp_path / "yf"),
            "USER_RATE_LIMIT_PER_MINUTE": "3",
            "CORS_ALLOWED_ORIGINS": DASHBOARD,
        }
    )
    bootstrap.use_container(bootstrap.Container(settings, replay_transport=YahooReplayTransport()))
    with Client(app_module.app, stage_name="local") as client:
        yield client
    bootstrap.use_container(None)


def _auth(subject: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_dev_token(subject)}"}


def test_per_user_rate_limit_answers_429_with_retry_after_and_ratelimit_headers(strict_client: Client) -> None:
    # /providers makes no provider call: each request costs exactly 1 unit of the budget.
    responses = [strict_client.http.get("/api/v1/market/providers", headers=_auth()) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in responses] == ["2", "1", "0", "0"]
    limited = responses[-1]
    assert limited.headers["X-RateLimit-Limit"] == "3"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert json.loads(limited.body)["error"]["code"] == "rate_limited"
    other_user = strict_client.http.get("/api/v1/market/providers", headers=_auth("bob"))
    assert other_user.status_code == 200, "limits are per JWT subject"


def test_cors_allows_only_the_configured_origin(strict_client: Client) -> None:
    allowed = strict_client.http.get("/api/v1/market/cache/stats", headers={**_auth(), "Origin": DASHBOARD})
    assert allowed.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Retry-After" in allowed.headers["Access-Control-Expose-Headers"]
    assert allowed.headers["Vary"] == "Origin"
    foreign = strict_client.http.get(
        "/api/v1/market/cache/stats", headers={**_auth(), "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_preflight_needs_no_token_and_names_the_allowed_methods(strict_client: Client) -> None:
    preflight = strict_client.http.request(
        "OPTIONS",
        "/api/v1/market/search",
        headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    refused = strict_client.http.request("OPTIONS", "/api/v1/market/search", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Methods" not in refused.headers


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/api/v1/market/movers?type=sideways", "type"),
        ("/api/v1/market/movers?limit=0", "limit"),
        ("/api/v1/market/movers?limit=abc", "limit"),
        ("/api/v1/market/movers?limt=5", "limt"),
        ("/api/v1/market/movers?type=gainers&type=losers", "more than once"),
        ("/api/v1/market/historical/AAPL?period=7y", "period"),
        ("/api/v1/market/historical/AAPL?interval=1m&period=1y", "interval 1m"),
        ("/api/v1/market/news/AAPL?limit=500", "limit"),
        ("/api/v1/market/quotes", "symbols"),
        ("/api/v1/market/quotes?symbols=,,", "at least one"),
        ("/api/v1/market/quotes?symbols=" + ",".join(["AAPL"] * 51), "at most 50"),
        ("/api/v1/market/quote/A%20OR%201", "not a valid ticker"),
    ],
)
def test_bad_query_input_is_a_400_naming_the_problem(client: Client, path: str, fragment: str) -> None:
    response = client.http.get(path, headers=_auth())
    assert response.status_code == 400
    body = json.loads(response.body)
    assert body["error"]["code"] == "validation_error"
    assert fragment in body["error"]["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "fragment"),
    [
        (b"{not json", "application/json", 400, "not valid JSON"),
        (b"[1, 2]", "application/json", 400, "JSON object"),
        (b'{"query": ""}', "application/json", 400, "query"),
        (b'{"query": "apple", "limit": 1000}', "application/json", 400, "limit"),
        (b'{"query": "apple", "extra": 1}', "application/json", 400, "extra"),
        (b"", "application/json", 400, "required"),
        (b"query=apple", "application/x-www-form-urlencoded", 415, ""),
    ],
)
def test_bad_search_bodies_are_clear_errors(
    client: Client, body: bytes, content_type: str, status: int, fragment: str
) -> None:
    response = client.http.post("/api/v1/market/search", body=body, headers={**_auth(), "Content-Type": content_type})
    assert response.status_code == status
    error = json.loads(response.body)["error"]
    assert fragment in error["message"]


def test_openapi_is_public_31_and_lists_every_route(client: Client) -> None:
    response = client.http.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = json.loads(response.body)
    assert document["openapi"].startswith("3.1")
    routes = {
        (path, method)
        for path, entry in app_module.app.routes.items()
        for method in entry
        # The public resources: the two API documents, and the dashboard's page, files and configuration.
        if method != "OPTIONS" and path not in PUBLIC_RESOURCES
    }
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    assert documented == routes
    assert {"/api/v1/openapi.json", "/api/v1/asyncapi.json"} <= PUBLIC_RESOURCES
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_provider_text_is_served_as_json_never_html(client: Client) -> None:
    response = client.http.get("/api/v1/market/providers", headers=_auth())
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_providers_endpoint_lists_the_chain_in_order(client: Client) -> None:
    body = json.loads(client.http.get("/api/v1/market/providers", headers=_auth()).body)
    names = [p["name"] for p in body["providers"]]
    assert names == ["yahoo", "fmp", "alpha_vantage", "tiingo"]
    assert body["data_source"] == "replay"
    yahoo, fmp = body["providers"][0], body["providers"][1]
    assert (yahoo["configured"], yahoo["position"]) == (True, 1)
    assert (fmp["configured"], fmp["position"]) == (False, None), "no key locally: not in the chain"
    assert yahoo["breaker_state"] == "closed"
    # A plain user sees no quota or failure detail (how much it takes to empty a vendor for everyone).
    for field in ("quota_minute", "quota_day", "consecutive_failures", "last_error", "last_error_at"):
        assert yahoo[field] is None, field
    operator = {"Authorization": f"Bearer {issue_dev_token('ops', operator=True)}"}
    detailed = json.loads(client.http.get("/api/v1/market/providers", headers=operator).body)["providers"][0]
    assert detailed["quota_minute"]["limit"] == 2000
    assert detailed["quota_day"]["limit"] == 100_000
    assert detailed["consecutive_failures"] == 0
    assert "quote" in yahoo["capabilities"]
