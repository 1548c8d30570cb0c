"""The three WebSocket handlers invoked as Lambda invokes them (API-Gateway-shaped events), against moto's
DynamoDB (in-process), our own Redis and the replay source; what the handlers post is recorded by a
fake management API. The same flows over real sockets are in tests/integration/test_websocket_stack.py."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.models.market import QuoteResponse
from chalicelib.models.streaming import quote_update
from chalicelib.ports import ConnectionRecord, shard_for
from chalicelib.settings import load_settings
from infra.local.replay.transport import YahooReplayTransport
from infra.local.token import issue_dev_token
from tests.app.conftest import app_settings_env
from tests.fakes.broadcaster import RecordingBroadcaster
from tests.fakes.dynamodb import dynamodb_operations


def _context(event_type: str, connection_id: str, route_key: str) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "connectionId": connection_id,
        "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        "stage": "local",
        "apiId": "abc123",
        "requestId": str(uuid.uuid4()),
        "requestTimeEpoch": now_ms,
        "connectedAt": now_ms,
        "messageDirection": "IN",
        "identity": {"sourceIp": "203.0.113.9", "userAgent": "pytest"},
    }


def connect_event(
    connection_id: str, *, token: str | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "headers": {"Host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})},
        "queryStringParameters": {"token": token} if token else None,
        "requestContext": _context("CONNECT", connection_id, "$connect"),
        "isBase64Encoded": False,
    }


def message_event(connection_id: str, body: str) -> dict[str, Any]:
    return {"body": body, "requestContext": _context("MESSAGE", connection_id, "$default"), "isBase64Encoded": False}


def disconnect_event(connection_id: str) -> dict[str, Any]:
    context = {**_context("DISCONNECT", connection_id, "$disconnect"), "disconnectStatusCode": 1000}
    return {"requestContext": context, "isBase64Encoded": False}


class Lambda:
    """Invokes the deployed handler objects (app.on_ws_connect etc.) with a context, as the runtime does."""

    def connect(self, connection_id: str, **kwargs: Any) -> dict[str, Any]:
        result: dict[str, Any] = app_module.on_ws_connect(connect_event(connection_id, **kwargs), None)
        return result

    def send(self, connection_id: str, message: Any) -> None:
        body = message if isinstance(message, str) else json.dumps(message)
        app_module.on_ws_message(message_event(connection_id, body), None)

    def disconnect(self, connection_id: str) -> None:
        app_module.on_ws_disconnect(disconnect_event(connection_id), None)


@pytest.fixture
def ws(client: Client) -> Lambda:
    return Lambda()


def _container() -> bootstrap.Container:
    return bootstrap.container()


def _token(subject: str = "ws-user") -> str:
    return issue_dev_token(subject)


# --- $connect ---------------------------------------------------------------------------------------


def test_connect_without_a_token_is_refused_with_401_and_nothing_is_stored(ws: Lambda) -> None:
    result = ws.connect("c-none")
    assert result["statusCode"] == 401
    assert json.loads(result["body"])["error"]["code"] == "unauthorized"
    assert _container().connection_store.get_connection("c-none", now=time.time()) is None


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", issue_dev_token("x", ttl_seconds=-10)])
def test_connect_with_a_bad_or_expired_token_is_refused(ws: Lambda, token: str) -> None:
    result = ws.connect("c-bad", token=token)
    assert result["statusCode"] == 401
    assert _container().connection_store.get_connection("c-bad", now=time.time()) is None


def test_connect_with_a_query_token_stores_the_connection_with_the_two_hour_ttl(ws: Lambda) -> None:
    before = int(time.time())
    result = ws.connect("c-ok", token=_token("alice"))
    assert result["statusCode"] == 200
    record = _container().connection_store.get_connection("c-ok", now=time.time())
    assert record is not None
    assert record.user_id == "alice"
    assert record.source_ip == "203.0.113.9"
    # API Gateway's 2 h maximum plus the 10 min margin.
    assert before + 7200 + 600 <= record.expires_at <= int(time.time()) + 7200 + 600
    # Its shard: a stable hash of the id over WS_SHARD_COUNT (16 by default); the shard's read finds it.
    assert record.shard == shard_for("c-ok", 16)
    in_shard = _container().connection_store.connections_in_shard(record.shard, now=time.time())
    assert [r.connection_id for r in in_shard] == ["c-ok"]


def test_connect_with_the_token_as_subprotocol_selects_the_bearer_protocol(ws: Lambda) -> None:
    result = ws.connect("c-proto", headers={"Sec-WebSocket-Protocol": f"bearer, {_token()}"})
    assert result["statusCode"] == 200
    assert result["headers"]["Sec-WebSocket-Protocol"] == "bearer"


def test_connect_with_an_authorization_header_for_non_browser_clients(ws: Lambda) -> None:
    result = ws.connect("c-hdr", headers={"Authorization": f"Bearer {_token()}"})
    assert result["statusCode"] == 200
    assert "Sec-WebSocket-Protocol" not in (result.get("headers") or {})


@pytest.fixture
def capped(
    aws: None,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    replay_transport: YahooReplayTransport,
    broadcaster: RecordingBroadcaster,
) -> Iterator[Lambda]:
    settings = load_settings(
        app_settings_env(redis_url, tmp_path, WS_MAX_CONNECTIONS_PER_USER="2", WS_MAX_SUBSCRIPTIONS_PER_CONNECTION="3")
    )
    bootstrap.use_container(bootstrap.Container(settings, replay_transport=replay_transport, broadcaster=broadcaster))
    yield Lambda()
    bootstrap.use_container(None)


def test_a_user_may_hold_several_connections_up_to_the_cap(capped: Lambda) -> None:
    token = _token("bob")
    assert capped.connect("b1", token=token)["statusCode"] == 200
    assert capped.connect("b2", token=token)["statusCode"] == 200
    refused = capped.connect("b3", token=token)
    assert refused["statusCode"] == 429
    assert json.loads(refused["body"])["error"]["code"] == "too_many_connections"
    # Another user is not affected; and a closed connection frees a slot.
    assert capped.connect("c1", token=_token("carol"))["statusCode"] == 200
    capped.disconnect("b1")
    assert capped.connect("b3", token=token)["statusCode"] == 200


# --- $default ---------------------------------------------------------------------------------------


def _connected(ws: Lambda, connection_id: str = "conn-1", subject: str = "ws-user") -> str:
    assert ws.connect(connection_id, token=_token(subject))["statusCode"] == 200
    return connection_id


def test_ping_is_answered_with_pong(ws: Lambda, broadcaster: RecordingBroadcaster) -> None:
    cid = _connected(ws)
    ws.send(cid, {"type": "ping"})
    (pong,) = broadcaster.messages_to(cid)
    assert pong["type"] == "pong"
    assert pong["data"]["timestamp"].endswith("Z")


def test_subscribe_to_market_channels_as_the_spec_sends_it(ws: Lambda, broadcaster: RecordingBroadcaster) -> None:
    cid = _connected(ws)
    ws.send(cid, {"type": "subscribe", "data": {"type": "market_data", "channels": ["indices", "sentiment"]}})
    ack, *snapshots = broadcaster.messages_to(cid)
    assert ack == {
        "type": "subscribed",
        "data": {"subscriptions": {"channels": ["indices", "sentiment"], "symbols": []}},
    }
    by_type = {m["type"]: m["data"] for m in snapshots}
    assert set(by_type) == {"market_update", "sentiment_update"}
    assert by_type["market_update"]["channel"] == "indices"
    assert by_type["market_update"]["indices"], "an index snapshot with values"
    assert all(d["snapshot"] is True and d["source"] == "replay" for d in by_type.values())
    assert 0 <= by_type["sentiment_update"]["score"] <= 100


def test_subscribe_to_stock_quotes_gives_an_ack_and_a_quote_update_per_symbol(
    ws: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    cid = _connected(ws)
    ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL", "msft"]}})
    ack, *snapshots = broadcaster.messages_to(cid)
    assert ack["data"]["subscriptions"] == {"channels": [], "symbols": ["AAPL", "MSFT"]}
    assert sorted(m["data"]["symbol"] for m in snapshots) == ["AAPL", "MSFT"]
    for message in snapshots:
        assert message["type"] == "quote_update"
        data = message["data"]
        # The spec's shape, field for field, plus provenance.
        assert set(data) == {"symbol", "quote", "timestamp", "source", "snapshot"}
        assert set(data["quote"]) == {"price", "change", "changePercent", "volume"}
        assert isinstance(data["quote"]["price"], float)
        assert data["timestamp"].endswith("Z")
    topics = _container().connection_store.topics_of(cid, now=time.time())
    assert sorted(topics) == ["quote:AAPL", "quote:MSFT"]


def test_each_ack_holds_the_whole_current_set_and_unsubscribe_removes(
    ws: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    cid = _connected(ws)
    ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    ws.send(cid, {"type": "subscribe", "data": {"type": "market_data", "channels": ["sectors"]}})
    broadcaster.clear()
    ws.send(cid, {"type": "unsubscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    (ack,) = broadcaster.messages_to(cid)
    assert ack == {"type": "unsubscribed", "data": {"subscriptions": {"channels": ["sectors"], "symbols": []}}}
    assert _container().connection_store.subscribers("quote:AAPL", now=time.time()) == []


BAD_INPUT = [
    ("{not json", "invalid_json"),
    ("[1, 2]", "invalid_message"),
    ("", "invalid_message"),
    (json.dumps({"type": "subscribe"}), "invalid_message"),
    (json.dumps({"type": "hello"}), "unknown_type"),
    (json.dumps({"type": "subscribe", "data": {"type": "market_data", "channels": ["weather"]}}), "unknown_channel"),
    (json.dumps({"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["../etc"]}}), "invalid_symbol"),
    (json.dumps({"type": "subscribe", "data": {"type": "stock_quotes", "symbols": [42]}}), "invalid_message"),
    (json.dumps({"type": "subscribe", "data": {"type": "bonds", "symbols": ["AAPL"]}}), "invalid_message"),
    (
        json.dumps({"type": "subscribe", "data": {"type": "stock_quotes", "symbols": [f"S{i}" for i in range(60)]}}),
        "too_many_symbols",
    ),
    (json.dumps({"type": "ping", "pad": "x" * 20_000}), "message_too_large"),
]


@pytest.mark.parametrize(("body", "code"), BAD_INPUT)
def test_bad_input_gets_an_error_message_and_the_connection_stays(
    ws: Lambda, broadcaster: RecordingBroadcaster, body: str, code: str
) -> None:
    cid = _connected(ws)
    ws.send(cid, body)
    (reply,) = broadcaster.messages_to(cid)
    assert reply["type"] == "error"
    assert reply["data"]["code"] == code
    assert reply["data"]["message"]
    # Still connected and still served.
    assert _container().connection_store.get_connection(cid, now=time.time()) is not None
    broadcaster.clear()
    ws.send(cid, {"type": "ping"})
    assert [m["type"] for m in broadcaster.messages_to(cid)] == ["pong"]


def test_the_subscription_cap_counts_what_the_connection_already_holds(
    capped: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    cid = _connected(capped, "cap-1")
    capped.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL", "MSFT"]}})
    broadcaster.clear()
    capped.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["GOOG", "NVDA"]}})
    (reply,) = broadcaster.messages_to(cid)
    assert reply["data"]["code"] == "too_many_symbols"
    assert sorted(_container().connection_store.topics_of(cid, now=time.time())) == ["quote:AAPL", "quote:MSFT"]


# --- $disconnect and fan-out ------------------------------------------------------------------------


def test_disconnect_removes_the_connection_and_all_its_subscriptions(ws: Lambda) -> None:
    cid = _connected(ws)
    ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL", "MSFT"]}})
    ws.send(cid, {"type": "subscribe", "data": {"type": "market_data", "channels": ["indices"]}})
    ws.disconnect(cid)
    store = _container().connection_store
    now = time.time()
    assert store.get_connection(cid, now=now) is None
    assert store.topics_of(cid, now=now) == []
    assert store.subscribers("quote:AAPL", now=now) == []
    assert store.subscribed_topics() == []  # the registry counted them down


def _aapl(price: float) -> QuoteResponse:
    quote = _container().market_data.get_quote("AAPL")
    return quote.model_copy(update={"price": price})


def test_publish_sends_to_subscribers_and_a_410_removes_the_stale_connection(
    ws: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    alive, gone = _connected(ws, "alive", "u1"), _connected(ws, "gone", "u2")
    for cid in (alive, gone):
        ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    broadcaster.clear()
    broadcaster.gone.add(gone)
    streaming = _container().streaming
    report = streaming.publish([quote_update(_aapl(123.45))], broadcaster)
    assert (report.sent, report.gone, report.failed) == (1, 1, 0)
    (update,) = broadcaster.messages_to(alive)
    assert update["type"] == "quote_update"
    assert update["data"]["quote"]["price"] == 123.45
    assert update["data"]["snapshot"] is False
    store = _container().connection_store
    assert store.get_connection(gone, now=time.time()) is None
    assert store.subscribers("quote:AAPL", now=time.time()) == [alive]
    # The 410 cleanup released the gone connection's registry count and its place in the totals.
    assert store.topic_registry().totals() == {"quote:AAPL": 1}
    assert (streaming.stats().open_connections, streaming.stats().distinct_users) == (1, 1)
    assert streaming.stats().messages_last_hour is not None


def test_an_unchanged_value_is_not_sent_again(ws: Lambda, broadcaster: RecordingBroadcaster) -> None:
    cid = _connected(ws)
    ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    broadcaster.clear()
    streaming = _container().streaming
    first = streaming.publish([quote_update(_aapl(100.0))], broadcaster)
    again = streaming.publish([quote_update(_aapl(100.0))], broadcaster)
    changed = streaming.publish([quote_update(_aapl(100.5))], broadcaster)
    assert (first.sent, again.sent, again.unchanged, changed.sent) == (1, 0, 1, 1)
    assert [m["data"]["quote"]["price"] for m in broadcaster.messages_to(cid)] == [100.0, 100.5]


def test_a_round_nobody_received_is_sent_again_next_time(ws: Lambda, broadcaster: RecordingBroadcaster) -> None:
    cid = _connected(ws)
    ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    broadcaster.clear()
    broadcaster.failing.add(cid)
    streaming = _container().streaming
    assert streaming.publish([quote_update(_aapl(99.0))], broadcaster).failed == 1
    broadcaster.failing.clear()
    assert streaming.publish([quote_update(_aapl(99.0))], broadcaster).sent == 1


def test_expired_connections_are_not_fanned_out_to(ws: Lambda, broadcaster: RecordingBroadcaster) -> None:
    """DynamoDB's TTL deletes late (moto never): a subscription past its expiry is filtered on read."""
    store = _container().connection_store
    past = int(time.time()) - 60
    store.add_connection(ConnectionRecord("expired", "old-user", connected_at=_aapl(1).retrieved_at, expires_at=past))
    store.add_subscriptions("expired", ["quote:AAPL"], expires_at=past)
    cid = _connected(ws)
    ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    broadcaster.clear()
    report = _container().streaming.publish([quote_update(_aapl(77.0))], broadcaster)
    assert report.sent == 1
    assert [target for target, _ in broadcaster.sent] == [cid]


def test_ws_stats_counts_connections_users_topics_and_messages(
    client: Client, ws: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    for cid, user, symbols in (("s1", "u1", ["AAPL", "MSFT"]), ("s2", "u1", ["AAPL"]), ("s3", "u2", ["AAPL"])):
        _connected(ws, cid, user)
        ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": symbols}})
    ws.send("s2", {"type": "unsubscribe", "data": {"type": "stock_quotes", "symbols": ["MSFT", "AAPL"]}})
    ws.send("s2", {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    _container().streaming.publish([quote_update(_aapl(55.5))], broadcaster)
    with dynamodb_operations(_container().dynamodb) as operations:
        response = client.http.get("/api/v1/market/ws/stats?top=1", headers={"Authorization": f"Bearer {_token()}"})
    # The registry's counters, not a Scan of the connections and subscriptions tables.
    assert operations
    assert "Scan" not in operations
    assert response.status_code == 200
    body = json.loads(response.body)
    assert (body["open_connections"], body["distinct_users"]) == (3, 2)
    assert body["top_topics"] == [{"topic": "quote:AAPL", "subscribers": 3}]
    assert body["messages_last_hour"]["sent"] == 3
