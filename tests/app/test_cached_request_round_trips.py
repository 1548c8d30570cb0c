"""A cached quote request costs one Redis round trip: the per-user rate limit rides the cache read.

Round trips are counted at the adapter boundary: the container's Redis client uses a connection class
that counts what it sends (one packed send per command or per pipeline), against the suite's own Redis.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.settings import load_settings
from infra.local.replay.transport import YahooReplayTransport
from infra.local.token import issue_dev_token
from tests.app.conftest import app_settings_env
from tests.fakes.broadcaster import RecordingBroadcaster
from tests.redis_counting import CountingConnection

QUOTE = "/api/v1/market/quote/"


def counted_client(redis_url: str) -> redis.Redis:
    # The client the container builds (redis_support.redis_client), over the counting connection.
    return redis.Redis(
        connection_pool=redis.ConnectionPool.from_url(
            redis_url,
            connection_class=CountingConnection,
            socket_timeout=0.25,
            socket_connect_timeout=0.25,
            health_check_interval=30,
        ),
    )


def client_with(redis_url: str, tmp_path: Path, replay_transport: YahooReplayTransport, **env: str) -> Iterator[Client]:
    settings = load_settings(app_settings_env(redis_url, tmp_path, **env))
    container = bootstrap.Container(settings, replay_transport=replay_transport, broadcaster=RecordingBroadcaster())
    container.__dict__["redis"] = counted_client(redis_url)  # before any adapter is built from it
    bootstrap.use_container(container)
    with Client(app_module.app, stage_name="local") as test_client:
        yield test_client
    bootstrap.use_container(None)


@pytest.fixture
def counted(
    aws: None, redis_url: str, redis_client: redis.Redis, tmp_path: Path, replay_transport: YahooReplayTransport
) -> Iterator[Client]:
    yield from client_with(redis_url, tmp_path, replay_transport)


@pytest.fixture
def strict_budget(
    aws: None, redis_url: str, redis_client: redis.Redis, tmp_path: Path, replay_transport: YahooReplayTransport
) -> Iterator[Client]:
    yield from client_with(redis_url, tmp_path, replay_transport, USER_RATE_LIMIT_PER_MINUTE="3")


def round_trips_of(call: Any) -> tuple[int, Any]:
    before = CountingConnection.writes
    result = call()
    return CountingConnection.writes - before, result


def test_a_cached_quote_request_is_one_round_trip(counted: Client, auth_headers: dict[str, str]) -> None:
    # GIVEN AAPL in the cache (the first request fetched it) and a warm connection
    assert counted.http.get(QUOTE + "AAPL", headers=auth_headers).status_code == 200
    assert json.loads(counted.http.get(QUOTE + "AAPL", headers=auth_headers).body)["cached"] is True

    # WHEN it is requested again, five times
    for _ in range(5):
        trips, response = round_trips_of(lambda: counted.http.get(QUOTE + "AAPL", headers=auth_headers))

        # THEN each is one round trip: rate limit, read, hot set and lookup counter in one pipeline
        assert trips == 1
        assert response.status_code == 200
        assert json.loads(response.body)["cached"] is True
        assert int(response.headers["X-RateLimit-Remaining"]) < int(response.headers["X-RateLimit-Limit"])


def test_hits_and_misses_are_still_counted(counted: Client, auth_headers: dict[str, str]) -> None:
    counted.http.get(QUOTE + "AAPL", headers=auth_headers)  # a miss: fetched and stored
    for _ in range(3):
        counted.http.get(QUOTE + "AAPL", headers=auth_headers)  # hits
    container = bootstrap.container()
    counters = container.cache.lookup_counters()
    assert counters is not None
    assert (counters["quote"].hits, counters["quote"].misses) == (3, 1)


def test_a_spent_budget_is_still_a_429_and_stops_before_any_upstream_call(
    strict_budget: Client, auth_headers: dict[str, str], redis_client: redis.Redis
) -> None:
    # GIVEN a budget of 3 requests a minute, spent by a miss (which also costs its upstream call) and hits
    first = strict_budget.http.get(QUOTE + "AAPL", headers=auth_headers)
    assert first.status_code == 200
    assert strict_budget.http.get(QUOTE + "AAPL", headers=auth_headers).status_code == 429

    # WHEN the spent user asks for a symbol nobody cached
    trips, response = round_trips_of(lambda: strict_budget.http.get(QUOTE + "MSFT", headers=auth_headers))

    # THEN the answer is the standard 429, decided in the one read's round trip, and nothing was fetched
    assert response.status_code == 429
    assert json.loads(response.body)["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert trips == 1
    assert redis_client.exists("app:quote:MSFT") == 0


@pytest.mark.parametrize(
    ("path", "operator", "status"),
    [
        # A route that does not read the cache first decides the budget before its handler (operators' too).
        ("/api/v1/market/jobs/status", True, 200),
        # A request refused by validation before any Redis call: decided after the handler.
        ("/api/v1/market/quote/" + "A" * 40, False, 400),
        # A cached read carries it.
        (QUOTE + "AAPL", False, 200),
    ],
)
def test_every_request_costs_its_user_exactly_one_unit(
    counted: Client, auth_headers: dict[str, str], path: str, operator: bool, status: int
) -> None:
    # GIVEN AAPL cached by someone else (a miss would also charge its upstream call), and a user who has
    # made no request this minute
    assert counted.http.get(QUOTE + "AAPL", headers=auth_headers).status_code == 200
    headers = {"Authorization": f"Bearer {issue_dev_token(f'one-unit-{uuid.uuid4().hex}', operator=operator)}"}

    # WHEN it makes one request
    response = counted.http.get(path, headers=headers)

    # THEN the budget shows one unit used, however the request's first Redis call came (or did not)
    assert response.status_code == status
    limit = int(response.headers["X-RateLimit-Limit"])
    assert int(response.headers["X-RateLimit-Remaining"]) == limit - 1


def test_routes_that_do_not_read_the_cache_first_decide_the_budget_before_their_handler(
    strict_budget: Client, auth_headers: dict[str, str]
) -> None:
    # GIVEN a route whose first I/O is not the cache read, with a handler that records whether it ran
    (providers_route,) = [doc for doc in app_module.ROUTES if doc.path == "/api/v1/market/providers"]
    assert not providers_route.reads_cache_first
    container = bootstrap.container()
    real = container.provider_status
    ran: list[bool] = []

    class RecordingProviderStatus:
        def status(self, *, detail: bool) -> Any:
            ran.append(True)
            return real.status(detail=detail)

    container.__dict__["provider_status"] = RecordingProviderStatus()  # the container's cached property
    # ... and a user who has spent its budget (3 a minute)
    for _ in range(3):
        assert strict_budget.http.get("/api/v1/market/providers", headers=auth_headers).status_code == 200
    assert len(ran) == 3

    # WHEN that user calls it again
    response = strict_budget.http.get("/api/v1/market/providers", headers=auth_headers)

    # THEN the answer is the standard 429 and the handler never ran
    assert response.status_code == 429
    assert json.loads(response.body)["error"]["code"] == "rate_limited"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert len(ran) == 3


def test_the_routes_whose_hit_rides_the_cache_read_are_the_market_data_reads() -> None:
    riding = {doc.path for doc in app_module.ROUTES if doc.reads_cache_first}
    # Each of these reads the market-data cache (Redis) before anything else; operators' routes never ride.
    assert riding == {
        "/api/v1/market/" + name
        for name in (
            "overview", "indices", "sectors", "movers", "sentiment", "quote/{symbol}", "quotes",
            "historical/{symbol}", "profile/{symbol}", "news/{symbol}", "search",
        )
    }  # fmt: skip
    assert not any(doc.operator and doc.reads_cache_first for doc in app_module.ROUTES)
