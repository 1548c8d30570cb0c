"""Abuse resistance of the WebSocket API (issue 17), through the deployed handler objects against moto's
DynamoDB, the suite's Redis and the replay source: message budgets (a burst is refused with
``rate_limited`` before any DynamoDB write or provider call, then the connection is closed through the
management API), the per-user caps (connections under simultaneous connects, distinct symbols), symbols
stored only once known to exist, the subprotocol token, and token expiry.

Counted at the adapter boundaries: DynamoDB operations with a botocore ``before-call`` hook on the
container's client, provider requests at the replay transport (the HTTP layer under every provider)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

import app as app_module
from chalicelib import bootstrap
from chalicelib.models.streaming import quote_update
from chalicelib.settings import load_settings
from infra.local.replay.transport import CannedResponse, YahooReplayTransport
from infra.local.token import issue_dev_token
from tests.app.conftest import app_settings_env
from tests.app.test_websocket_handlers import Lambda, _aapl, _container_with, connect_event
from tests.fakes.broadcaster import RecordingBroadcaster
from tests.fakes.dynamodb import SerializedClient, dynamodb_operations
from tests.fakes.vendors_http import VendorTransport
from tests.ws_protocol import assert_server_message

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


class CountingReplay(YahooReplayTransport):
    """The replay source, counting the provider requests that reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0
        self._count_lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        with self._count_lock:
            self.requests += 1
        return super().send(request, **kwargs)


@pytest.fixture
def transport() -> CountingReplay:
    return CountingReplay()


def _handlers(
    redis_url: str, tmp_path: Path, transport: YahooReplayTransport, broadcaster: RecordingBroadcaster, **env: str
) -> Iterator[Lambda]:
    yield _container_with(redis_url, tmp_path, transport, broadcaster, **env)
    bootstrap.use_container(None)


@pytest.fixture
def tight(
    aws: None,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    transport: CountingReplay,
    broadcaster: RecordingBroadcaster,
) -> Iterator[Lambda]:
    """Two subscribes' worth per connection (cost 5 each), refilling one unit per 100 s; closed at the
    4th refusal within a minute; at most 3 distinct symbols per user."""
    yield from _handlers(
        redis_url,
        tmp_path,
        transport,
        broadcaster,
        WS_BUDGET_CONNECTION_CAPACITY="10",
        WS_BUDGET_CONNECTION_REFILL_PER_SECOND="0.01",
        WS_BUDGET_CLOSE_AFTER_REJECTIONS="4",
        WS_MAX_SYMBOLS_PER_USER="3",
    )


@pytest.fixture
def ws(
    aws: None,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    transport: CountingReplay,
    broadcaster: RecordingBroadcaster,
) -> Iterator[Lambda]:
    yield from _handlers(redis_url, tmp_path, transport, broadcaster)


def _subscribe(*symbols: str) -> dict[str, Any]:
    return {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": list(symbols)}}


def _connected(ws: Lambda, connection_id: str, subject: str = "abuser", ttl_seconds: int = 3600) -> str:
    assert ws.connect(connection_id, token=issue_dev_token(subject, ttl_seconds=ttl_seconds))["statusCode"] == 200
    return connection_id


def _topics(connection_id: str) -> list[str]:
    return sorted(bootstrap.container().connection_store.topics_of(connection_id, now=time.time()))


# --- budgets ----------------------------------------------------------------------------------------


def test_a_burst_over_the_budget_is_refused_before_any_write_or_provider_call_then_closed(
    tight: Lambda, broadcaster: RecordingBroadcaster, transport: CountingReplay
) -> None:
    # GIVEN a connection that spent its budget on two subscribes (each a provider call and DynamoDB writes)
    cid = _connected(tight, "burst-1")
    container = bootstrap.container()
    with dynamodb_operations(container.dynamodb) as within_budget:
        tight.send(cid, _subscribe("AAPL"))
        tight.send(cid, _subscribe("MSFT"))
    assert WRITES & set(within_budget), "a subscribe within budget writes (the counter-check)"
    assert transport.requests >= 1, "a subscribe within budget asks a provider (the counter-check)"
    assert [m["type"] for m in broadcaster.messages_to(cid) if m["type"] != "quote_update"] == ["subscribed"] * 2
    broadcaster.clear()
    provider_requests = transport.requests

    # WHEN it keeps sending: new symbols (each would be a provider call and writes), an unsubscribe, a resync
    burst = [_subscribe("GOOG"), {"type": "unsubscribe", "data": _subscribe("AAPL")["data"]}, {"type": "resync"},
             _subscribe("NVDA")]  # fmt: skip
    with dynamodb_operations(container.dynamodb) as during_burst:
        for message in burst:
            tight.send(cid, message)

    # THEN each is refused with rate_limited and when to retry, nothing was written or fetched ...
    replies = broadcaster.messages_to(cid)
    assert [r["data"]["code"] for r in replies] == ["rate_limited"] * len(burst)
    for reply in replies:
        assert reply["data"]["retry_after"] >= 1
    assert replies[-1]["data"]["retry_after"] <= 500  # 5 units at 0.01 per second
    assert not WRITES & set(during_burst), during_burst
    assert transport.requests == provider_requests
    assert _topics(cid) == ["quote:AAPL", "quote:MSFT"]
    # ... and the 4th refusal within the window closed the connection through the management API
    assert broadcaster.closed == [cid]


def test_ping_costs_little_and_the_bucket_refills(
    aws: None,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    transport: CountingReplay,
    broadcaster: RecordingBroadcaster,
) -> None:
    handlers = _container_with(
        redis_url,
        tmp_path,
        transport,
        broadcaster,
        WS_BUDGET_CONNECTION_CAPACITY="6",
        WS_BUDGET_CONNECTION_REFILL_PER_SECOND="5",
    )
    try:
        cid = _connected(handlers, "ping-1")
        handlers.send(cid, _subscribe("AAPL"))  # 5 of 6
        handlers.send(cid, {"type": "ping"})  # 1 of 1 left
        broadcaster.clear()
        handlers.send(cid, _subscribe("MSFT"))  # refused: 5 needed
        (refused,) = broadcaster.messages_to(cid)
        assert refused["data"]["code"] == "rate_limited"
        assert refused["data"]["retry_after"] == 1
        time.sleep(1.1)  # 5 units a second
        broadcaster.clear()
        handlers.send(cid, _subscribe("MSFT"))
        assert broadcaster.messages_to(cid)[0]["type"] == "subscribed"
        assert broadcaster.closed == []
    finally:
        bootstrap.use_container(None)


def test_the_user_budget_is_shared_by_the_users_connections(
    aws: None,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    transport: CountingReplay,
    broadcaster: RecordingBroadcaster,
) -> None:
    handlers = _container_with(
        redis_url,
        tmp_path,
        transport,
        broadcaster,
        WS_BUDGET_USER_CAPACITY="10",
        WS_BUDGET_USER_REFILL_PER_SECOND="0.01",
    )
    try:
        first, second = _connected(handlers, "u-1", "dana"), _connected(handlers, "u-2", "dana")
        other = _connected(handlers, "u-3", "erin")
        handlers.send(first, {"type": "resync"})
        handlers.send(second, {"type": "resync"})
        broadcaster.clear()
        handlers.send(second, {"type": "ping"})  # the user's bucket is empty, whichever connection asks
        assert [m["data"]["code"] for m in broadcaster.messages_to(second)] == ["rate_limited"]
        handlers.send(other, {"type": "ping"})  # another user is not affected
        assert [m["type"] for m in broadcaster.messages_to(other)] == ["pong"]
    finally:
        bootstrap.use_container(None)


def test_junk_pays_the_highest_cost_before_its_error(tight: Lambda, broadcaster: RecordingBroadcaster) -> None:
    cid = _connected(tight, "junk-1")
    for _ in range(2):
        tight.send(cid, "{not json")
    tight.send(cid, {"type": "ping"})
    codes = [m["data"]["code"] for m in broadcaster.messages_to(cid)]
    assert codes == ["invalid_json", "invalid_json", "rate_limited"]


# --- per-user caps --------------------------------------------------------------------------------


def test_ten_simultaneous_connects_of_one_user_at_most_the_cap_succeed(ws: Lambda) -> None:
    # GIVEN the default cap of 5 connections per user; WHEN ten connects of one user arrive at once
    container = bootstrap.container()
    # moto's in-process backend has no locking: two threads can interleave inside one conditional write,
    # which DynamoDB never does. One request at a time (races between requests still happen), as the
    # store's own contract test runs it.
    container.dynamodb = SerializedClient(container.dynamodb)  # the cached property, before first use
    token = issue_dev_token("crowd")
    barrier = threading.Barrier(10)
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def connect(index: int) -> None:
        event = connect_event(f"crowd-{index}", token=token)
        barrier.wait()
        result = app_module.on_ws_connect(event, None)
        with lock:
            statuses[f"crowd-{index}"] = result["statusCode"]

    threads = [threading.Thread(target=connect, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN exactly the cap get in, the rest get 429, and the store holds exactly those
    accepted = sorted(cid for cid, status in statuses.items() if status == 200)
    assert len(accepted) == 5
    assert sorted(statuses.values()) == [200] * 5 + [429] * 5
    held = bootstrap.container().connection_store.connections_of_user("crowd", now=time.time())
    assert sorted(r.connection_id for r in held) == accepted


def test_distinct_symbols_per_user_are_capped_over_all_its_connections(
    tight: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    first, second = _connected(tight, "sym-1", "frank"), _connected(tight, "sym-2", "frank")
    tight.send(first, _subscribe("AAPL", "MSFT"))
    tight.send(second, _subscribe("AAPL", "GOOG"))  # AAPL is already counted: 3 distinct
    broadcaster.clear()
    tight.send(second, _subscribe("NVDA"))
    (refusal,) = broadcaster.messages_to(second)
    assert refusal["data"]["code"] == "too_many_user_symbols"
    assert "at most 3" in refusal["data"]["message"]
    assert _topics(second) == ["quote:AAPL", "quote:GOOG"]


# --- existence ------------------------------------------------------------------------------------


def test_a_symbol_is_stored_only_once_known_to_exist(
    aws: None, redis_url: str, redis_client: redis.Redis, tmp_path: Path, broadcaster: RecordingBroadcaster
) -> None:
    """Every provider down: a symbol of the bundled S&P 500 list is stored (it exists; its updates follow
    once a provider answers); a symbol nobody can vouch for is not, and the error says so."""
    down = VendorTransport().answer("yahoo", CannedResponse(503, b"down", "text/plain"))
    settings = load_settings(
        app_settings_env(redis_url, tmp_path, MARKET_DATA_SOURCE="live", PROVIDER_MAX_ATTEMPTS="1")
    )
    bootstrap.use_container(bootstrap.Container(settings, http_transport=down, broadcaster=broadcaster))
    try:
        handlers = Lambda()
        cid = _connected(handlers, "exist-1")
        handlers.send(cid, _subscribe("AAPL", "QZXQ"))
        ack, *errors = broadcaster.messages_to(cid)
        assert ack["data"]["subscriptions"]["symbols"] == ["AAPL"]
        by_symbol = {("QZXQ" if "QZXQ" in e["data"]["message"] else "AAPL"): e["data"] for e in errors}
        assert by_symbol["QZXQ"]["code"] == "service_unavailable"  # every source down
        assert by_symbol["QZXQ"]["message"].endswith("not subscribed")
        assert not by_symbol["AAPL"]["message"].endswith("not subscribed")
        assert _topics(cid) == ["quote:AAPL"]
    finally:
        bootstrap.use_container(None)


# --- identity ---------------------------------------------------------------------------------------


def test_the_subprotocol_token_is_preferred_and_never_echoed(ws: Lambda) -> None:
    offered = issue_dev_token("grace")
    result = ws.connect(
        "proto-1", token=issue_dev_token("mallory"), headers={"Sec-WebSocket-Protocol": f"bearer, {offered}"}
    )
    assert result["statusCode"] == 200
    assert result["headers"] == {"Sec-WebSocket-Protocol": "bearer"}
    record = bootstrap.container().connection_store.get_connection("proto-1", now=time.time())
    assert record is not None
    assert record.user_id == "grace"
    # A lone token offered as the subprotocol is accepted, and no subprotocol is selected (never the token).
    lone = issue_dev_token("heidi")
    alone = ws.connect("proto-2", headers={"Sec-WebSocket-Protocol": lone})
    assert alone["statusCode"] == 200
    assert "Sec-WebSocket-Protocol" not in (alone.get("headers") or {})
    assert offered not in json.dumps(result)
    assert lone not in json.dumps(alone)


def test_the_query_token_still_works_and_the_tokens_exp_is_stored(ws: Lambda) -> None:
    before = int(time.time())
    _connected(ws, "exp-1", "ivan", ttl_seconds=600)
    record = bootstrap.container().connection_store.get_connection("exp-1", now=time.time())
    assert record is not None
    assert record.token_expires_at is not None
    assert before + 600 <= record.token_expires_at <= int(time.time()) + 600


def test_a_message_after_the_token_expired_closes_the_connection(ws: Lambda, broadcaster: RecordingBroadcaster) -> None:
    cid = _connected(ws, "late-1", "judy", ttl_seconds=1)
    ws.send(cid, {"type": "ping"})
    assert [m["type"] for m in broadcaster.messages_to(cid)] == ["pong"]
    time.sleep(1.2)
    broadcaster.clear()
    ws.send(cid, {"type": "ping"})
    (reply,) = broadcaster.messages_to(cid)
    assert_server_message(reply)
    assert reply["data"]["code"] == "token_expired"
    assert broadcaster.closed == [cid]
    assert bootstrap.container().connection_store.get_connection(cid, now=time.time()) is None


def test_the_shard_worker_closes_connections_whose_token_expired(ws: Lambda, broadcaster: RecordingBroadcaster) -> None:
    expiring = _connected(ws, "w-late", "kate", ttl_seconds=1)
    staying = _connected(ws, "w-ok", "kate")
    for cid in (expiring, staying):
        ws.send(cid, _subscribe("AAPL"))
    time.sleep(1.2)
    broadcaster.clear()
    report = bootstrap.container().streaming.publish([quote_update(_aapl(999.5))], broadcaster)
    assert report.expired == 1
    assert [m["data"]["quote"]["price"] for m in broadcaster.messages_to(staying)] == [999.5]
    assert broadcaster.messages_to(expiring) == []
    assert broadcaster.closed == [expiring]
    store = bootstrap.container().connection_store
    assert store.get_connection(expiring, now=time.time()) is None
    assert store.subscribers("quote:AAPL", now=time.time()) == [staying]
