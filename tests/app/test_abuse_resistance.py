"""Abuse resistance, application side (issue 17): the shared vendor quotas, the operator endpoints, a Redis
outage, provider links. Through the Chalice app, with real Redis and moto; provider calls are counted at
the HTTP layer (VendorTransport), DynamoDB calls at the SDK (botocore hook), Redis calls on the client.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.settings import load_settings
from infra.local.replay.transport import CannedResponse, YahooReplayTransport
from infra.local.token import issue_dev_token
from tests.fakes.dynamodb import dynamodb_operations
from tests.fakes.vendors_http import VendorTransport, yahoo_recording

QUOTE = "/api/v1/market/quote/"


def _headers(subject: str = "alice", *, operator: bool = False) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_dev_token(subject, operator=operator)}"}


def _live_container(redis_url: str, tmp_path: Path, transport: VendorTransport, **env: str) -> bootstrap.Container:
    """Live providers (only Yahoo: no keys), answered at the HTTP layer by ``transport``."""
    settings = load_settings(
        {
            "STAGE": "local",
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": "abuse:",
            "YFINANCE_CACHE_DIR": str(tmp_path / "yfinance"),
            "PROVIDER_RETRY_BASE_SECONDS": "0",
            "PROVIDER_RETRY_MAX_SECONDS": "0",
            **env,
        }
    )
    return bootstrap.Container(settings, http_transport=transport)


@contextmanager
def _app(container: bootstrap.Container) -> Iterator[Client]:
    bootstrap.use_container(container)
    try:
        with Client(app_module.app, stage_name="local") as client:
            yield client
    finally:
        bootstrap.use_container(None)


# --- the shared quotas ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        (QUOTE + "SIX", "quote_SIX_unknown_symbol_empty"),
        ("/api/v1/market/profile/SIX", "quoteSummary_assetProfile_GC_F_404"),
        ("/api/v1/market/historical/SIX?period=1mo&interval=1d", "chart_SI_404_delisted"),
    ],
)
def test_repeated_requests_for_an_unknown_symbol_cost_one_provider_call_per_negative_cache_lifetime(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, path: str, answer: str
) -> None:
    transport = VendorTransport().answer("yahoo", yahoo_recording(answer))
    container = _live_container(redis_url, tmp_path, transport, NEGATIVE_CACHE_TTL_SECONDS="1")
    with _app(container) as api:
        first = api.http.get(path, headers=_headers())
        assert first.status_code == 404, first.body
        one_lookup = transport.calls["yahoo"]  # 1 (2 where yfinance repeats an HTTP error once)
        for _ in range(20):
            again = api.http.get(path, headers=_headers())
            assert again.status_code == 404
            assert json.loads(again.body)["error"]["code"] == "symbol_not_found"
        assert transport.calls["yahoo"] == one_lookup, "20 repeats within the negative-cache lifetime: no call"

        time.sleep(1.1)  # the negative entry expires: the vendor is asked again, once
        assert api.http.get(path, headers=_headers()).status_code == 404
        assert api.http.get(path, headers=_headers()).status_code == 404
        assert transport.calls["yahoo"] == 2 * one_lookup


def test_a_batch_with_a_known_unknown_symbol_does_not_ask_for_it_again(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    transport = VendorTransport().answer("yahoo", yahoo_recording("quote_AAPL"))
    with _app(_live_container(redis_url, tmp_path, transport)) as api:
        assert api.http.get(QUOTE + "NOPE", headers=_headers()).status_code == 404  # AAPL's answer lacks NOPE
        assert transport.calls == {"yahoo": 1}
        for _ in range(5):
            body = json.loads(api.http.get("/api/v1/market/quotes?symbols=AAPL,NOPE", headers=_headers()).body)
            items = {item["symbol"]: item for item in body["quotes"]}
            assert items["NOPE"]["error"]["code"] == "symbol_not_found"
            assert items["AAPL"]["quote"]["price"] > 0
        # One call fetched AAPL for the batch; NOPE was never asked again.
        assert transport.calls == {"yahoo": 2}
        assert all("NOPE" not in url for url in transport.urls[1:])


def test_different_limit_values_cost_one_provider_call_for_news_and_for_search(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    transport = VendorTransport().answer("yahoo", yahoo_recording("search_AAPL"))
    with _app(_live_container(redis_url, tmp_path, transport)) as api:
        for limit in (1, 2, 3, 10, 50):
            news = json.loads(api.http.get(f"/api/v1/market/news/AAPL?limit={limit}", headers=_headers()).body)
            assert len(news["articles"]) == min(limit, 4)  # the recording holds 4 news items
        assert transport.calls == {"yahoo": 1}
        assert "newsCount=50" in transport.urls[0], "fetched once at the largest size any request may ask"

        for limit in (1, 2, 5, 50):
            body = {"query": "apple", "limit": limit}
            response = api.http.post("/api/v1/market/search", headers=_headers(), body=json.dumps(body))
            assert response.status_code == 200, response.body
            assert 1 <= len(json.loads(response.body)["results"]) <= limit
        assert transport.calls == {"yahoo": 2}
        assert "quotesCount=50" in transport.urls[1]


def test_the_per_user_budget_charges_cache_misses_by_their_upstream_calls(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    transport = VendorTransport().answer("yahoo", yahoo_recording("quote_AAPL"))
    container = _live_container(
        redis_url, tmp_path, transport, USER_RATE_LIMIT_PER_MINUTE="50", USER_UPSTREAM_CALL_COST="20"
    )
    with _app(container) as api:

        def remaining(path: str) -> str:
            response = api.http.get(path, headers=_headers("budget-user"))
            assert response.status_code in (200, 404), response.body
            return str(response.headers["X-RateLimit-Remaining"])

        # miss (1 + 20), hit (1), miss on an unknown symbol (1 + 20), hit (1)
        assert [remaining(QUOTE + "AAPL"), remaining(QUOTE + "AAPL"), remaining(QUOTE + "ZZZQ")] == ["29", "28", "7"]
        assert remaining(QUOTE + "AAPL") == "6"
        hits_left = 0
        while (response := api.http.get(QUOTE + "AAPL", headers=_headers("budget-user"))).status_code == 200:
            hits_left += 1
        assert response.status_code == 429
        assert hits_left == 6, "50 units: 2 misses used 42 of them, so 10 requests in all, not 50"
        assert transport.calls == {"yahoo": 2}


# --- operator endpoints ----------------------------------------------------------------------------------

OPERATOR_ENDPOINTS = {
    ("GET", "/api/v1/market/cache/stats"),
    ("GET", "/api/v1/market/ws/stats"),
    ("GET", "/api/v1/market/jobs/status"),
    ("GET", "/api/v1/market/jobs/{task_id}"),
    ("POST", "/api/v1/market/jobs/{job_name}/run"),
}
# Values that make an operator's call harmless: an unknown task id and job name answer 404.
SAMPLE_PATH = {"{task_id}": str(uuid.uuid4()), "{job_name}": "no_such_job"}


def _concrete(path: str) -> str:
    for placeholder, value in SAMPLE_PATH.items():
        path = path.replace(placeholder, value)
    return path


def test_the_operator_endpoints_are_the_ones_marked_in_the_routes() -> None:
    assert {(doc.method, doc.path) for doc in app_module.ROUTES if doc.operator} == OPERATOR_ENDPOINTS


@pytest.mark.parametrize(("method", "path"), sorted(OPERATOR_ENDPOINTS))
def test_a_non_operator_token_gets_403_from_every_operator_endpoint(client: Client, method: str, path: str) -> None:
    url = _concrete(path)
    for headers in (_headers("plain-user"), {"Authorization": f"Bearer {_self_described_admin()}"}):
        refused = client.http.request(method, url, headers=headers)
        assert refused.status_code == 403, refused.body
        error = json.loads(refused.body)["error"]
        assert error["code"] == "forbidden"
        assert error["message"] == "this endpoint is for operators only"
    allowed = client.http.request(method, url, headers=_headers("ops", operator=True))
    assert allowed.status_code in (200, 404), allowed.body  # 404: the unknown task id or job name


def _self_described_admin() -> str:
    """A valid token whose holder calls itself an admin: a free-form claim, not the identity provider's role."""
    import jwt

    from chalicelib.settings import LOCAL_DEV_JWT_SECRET

    now = int(time.time())
    claims = {
        "sub": "mallory", "iss": "market-data-local", "aud": "market-data-dashboard", "iat": now, "exp": now + 300,
        "admin": True, "role": "operator", "groups": ["operators"],
    }  # fmt: skip
    return jwt.encode(claims, LOCAL_DEV_JWT_SECRET, algorithm="HS256")


@contextmanager
def _redis_calls(client: redis.Redis, names: tuple[str, ...]) -> Iterator[list[str]]:
    """Calls of ``names`` on the container's Redis client (the adapters' boundary) while the block runs."""
    seen: list[str] = []
    originals: dict[str, Callable[..., Any]] = {}
    for name in names:
        original = getattr(client, name)
        originals[name] = original

        def recorder(*args: Any, _name: str = name, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            seen.append(_name)
            return _original(*args, **kwargs)

        setattr(client, name, recorder)
    try:
        yield seen
    finally:
        for name in names:
            delattr(client, name)  # the instance attribute goes; the class's method shows again


def test_ws_stats_and_cache_stats_read_counters_with_no_scan_anywhere(client: Client) -> None:
    assert client.http.get(QUOTE + "AAPL", headers=_headers()).status_code == 200  # a miss and a write
    assert client.http.get(QUOTE + "AAPL", headers=_headers()).status_code == 200  # a hit
    container = bootstrap.container()
    operator = _headers("ops", operator=True)
    heavy = ("scan", "scan_iter", "keys", "info", "dbsize", "memory_usage")
    with dynamodb_operations(container.dynamodb) as operations, _redis_calls(container.redis, heavy) as redis_seen:
        cache_stats = client.http.get("/api/v1/market/cache/stats", headers=operator)
        ws_stats = client.http.get("/api/v1/market/ws/stats", headers=operator)
    assert (cache_stats.status_code, ws_stats.status_code) == (200, 200), (cache_stats.body, ws_stats.body)
    assert operations, "ws/stats read the registry"
    assert "Scan" not in operations
    assert redis_seen == [], "no keyspace SCAN (or KEYS, INFO) per request"
    assert json.loads(cache_stats.body)["kinds"]["quote"] == {"hits": 1, "misses": 1, "hit_rate": 0.5, "writes": 1}


# --- Redis down ------------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_with_redis_down_the_per_user_limit_still_refuses_past_its_budget(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "STAGE": "local",
            "MARKET_DATA_SOURCE": "replay",
            "REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0",  # nothing listens: every Redis call fails
            "YFINANCE_CACHE_DIR": str(tmp_path / "yfinance"),
            "USER_RATE_LIMIT_PER_MINUTE": "3",
        }
    )
    container = bootstrap.Container(settings, replay_transport=YahooReplayTransport())
    with _app(container) as api:
        statuses = [api.http.get("/api/v1/market/providers", headers=_headers("dave")).status_code for _ in range(5)]
        # The minute may roll over between two requests (a fresh window): allow one extra grant then.
        assert statuses[:3] == [200, 200, 200]
        assert 429 in statuses[3:]
        # Another user has its own budget; quotas grant (degraded) and breakers stay closed, so a quote
        # is still served, uncached, from the provider.
        quote = api.http.get(QUOTE + "AAPL", headers=_headers("erin"))
        assert quote.status_code == 200, quote.body
        assert json.loads(quote.body)["cached"] is False
    assert container.quotas.available is False


# --- provider links --------------------------------------------------------------------------------------


def _with_links(name: str, edit: Callable[[dict[str, Any]], None]) -> CannedResponse:
    canned = yahoo_recording(name)
    payload = json.loads(canned.body)
    edit(payload)
    return CannedResponse(canned.status, json.dumps(payload).encode(), canned.content_type)


def test_a_javascript_url_from_a_provider_never_reaches_a_client(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    def poison_news(payload: dict[str, Any]) -> None:
        payload["news"][0]["link"] = "javascript:alert(document.cookie)"
        payload["news"][1]["link"] = " JaVaScRiPt:alert(1)"
        payload["news"][2]["link"] = "data:text/html,<script>alert(1)</script>"

    def poison_profile(payload: dict[str, Any]) -> None:
        payload["quoteSummary"]["result"][0]["assetProfile"]["website"] = "javascript:alert(1)"

    transport = VendorTransport().respond(
        "yahoo",
        lambda request: (
            _with_links("search_AAPL", poison_news)
            if "/search" in (request.url or "")
            else _with_links("quoteSummary_assetProfile_AAPL", poison_profile)
        ),
    )
    with _app(_live_container(redis_url, tmp_path, transport)) as api:
        for _ in range(2):  # fetched, then from the cache
            news = api.http.get("/api/v1/market/news/AAPL?limit=10", headers=_headers())
            profile = api.http.get("/api/v1/market/profile/AAPL", headers=_headers())
            assert (news.status_code, profile.status_code) == (200, 200), (news.body, profile.body)
            for body in (news.body, profile.body):
                text = body.decode() if isinstance(body, bytes) else str(body)
                assert "javascript" not in text.lower()
                assert "data:text" not in text
            articles = json.loads(news.body)["articles"]
            assert [a["url"] for a in articles[:3]] == [None, None, None]
            assert articles[3]["url"].startswith("https://")
            assert json.loads(profile.body)["website"] is None
