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
from chalicelib.models.market import Quote
from chalicelib.models.served import Served
from chalicelib.models.streaming import quote_update
from chalicelib.ports import ConnectionRecord, DeliveryStatus, shard_for
from chalicelib.settings import load_settings
from infra.local.replay.transport import YahooReplayTransport
from infra.local.token import issue_dev_token
from tests.app.conftest import app_settings_env
from tests.fakes.broadcaster import RecordingBroadcaster
from tests.fakes.dynamodb import dynamodb_operations
from tests.real_rounds import daily_quotes, fixture_symbols
from tests.ws_protocol import assert_server_message


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
    connection_id: str,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    parameters = {**({"token": token} if token else {}), **(query or {})}
    return {
        "headers": {"Host": "abc123.execute-api.us-east-1.amazonaws.com", **(headers or {})},
        "queryStringParameters": parameters or None,
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


@pytest.fixture(autouse=True)
def every_message_matches_the_asyncapi_document(
    broadcaster: RecordingBroadcaster, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Whatever a test makes the service post is checked against the published protocol (collected, then
    asserted at the end: an assertion inside the handler would be caught by its last-resort except)."""
    problems: list[str] = []
    send = broadcaster.send

    def checked(connection_id: str, message: bytes) -> DeliveryStatus:
        try:
            assert_server_message(json.loads(message))
        except AssertionError as exc:
            problems.append(str(exc))
        return send(connection_id, message)

    monkeypatch.setattr(broadcaster, "send", checked)
    yield
    assert not problems, problems[:3]


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
        assert set(data) == {"symbol", "quote", "timestamp", "source", "snapshot", "stale"}
        assert set(data["quote"]) == {"price", "change", "changePercent", "volume"}
        assert isinstance(data["quote"]["price"], float)
        assert data["timestamp"].endswith("Z")
    topics = _container().connection_store.topics_of(cid, now=time.time())
    assert sorted(topics) == ["quote:AAPL", "quote:MSFT"]


def test_a_symbol_no_provider_knows_gets_an_error_naming_it_and_is_not_subscribed(
    ws: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    # GIVEN a connection; WHEN it subscribes to a quotable symbol and one no provider knows
    cid = _connected(ws)
    ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL", "QZXQ"]}})
    ack, *rest = broadcaster.messages_to(cid)
    # THEN the ack holds the quotable one, its snapshot follows, and an error names the other
    assert ack["data"]["subscriptions"] == {"channels": [], "symbols": ["AAPL"]}
    assert [m["data"]["symbol"] for m in rest if m["type"] == "quote_update"] == ["AAPL"]
    errors = [m["data"] for m in rest if m["type"] == "error"]
    assert len(errors) == 1
    assert errors[0]["code"] == "symbol_not_found"
    assert "QZXQ" in errors[0]["message"]
    assert _container().connection_store.topics_of(cid, now=time.time()) == ["quote:AAPL"]


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


def _aapl(price: float) -> Served[Quote]:
    quote = _container().market_data.get_quote("AAPL")
    return quote.with_payload(quote.payload.model_copy(update={"price": price}))


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
    store.add_connection(
        ConnectionRecord("expired", "old-user", connected_at=_aapl(1).provenance.retrieved_at, expires_at=past)
    )
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
        operator = {"Authorization": f"Bearer {issue_dev_token('ops', operator=True)}"}
        response = client.http.get("/api/v1/market/ws/stats?top=1", headers=operator)
    # The registry's counters, not a Scan of the connections and subscriptions tables.
    assert operations
    assert "Scan" not in operations
    assert response.status_code == 200
    body = json.loads(response.body)
    assert (body["open_connections"], body["distinct_users"]) == (3, 2)
    assert body["top_topics"] == [{"topic": "quote:AAPL", "subscribers": 3}]
    assert body["messages_last_hour"]["sent"] == 3


# --- message formats, sequence numbers, resync ---------------------------------------------------------


@pytest.mark.parametrize("value", ["xml", "BATCH", "batch,spec"])
def test_connect_with_an_unknown_format_is_refused_with_400_and_nothing_is_stored(ws: Lambda, value: str) -> None:
    result = ws.connect("c-fmt", token=_token(), query={"format": value})
    assert result["statusCode"] == 400
    error = json.loads(result["body"])["error"]
    assert error["code"] == "unknown_format"
    assert "batch" in error["message"]
    assert "spec" in error["message"]
    assert _container().connection_store.get_connection("c-fmt", now=time.time()) is None


@pytest.mark.parametrize(
    ("query", "stored"), [(None, "spec"), ({"format": "spec"}, "spec"), ({"format": "batch"}, "batch")]
)
def test_the_format_is_stored_with_the_connection(ws: Lambda, query: dict[str, str] | None, stored: str) -> None:
    assert ws.connect("c-f", token=_token(), query=query)["statusCode"] == 200
    record = _container().connection_store.get_connection("c-f", now=time.time())
    assert record is not None
    assert record.message_format == stored


def _subscribed_to_the_20(ws: Lambda, connection_id: str, message_format: str, subject: str) -> str:
    """Connected in a format and subscribed to the 20 fixture symbols (in the store directly: the replay
    source cannot quote most of them, so a subscribe message would also bring errors and no snapshots)."""
    assert ws.connect(connection_id, token=_token(subject), query={"format": message_format})["statusCode"] == 200
    record = _container().connection_store.get_connection(connection_id, now=time.time())
    assert record is not None
    _container().connection_store.add_subscriptions(
        connection_id, [f"quote:{s}" for s in fixture_symbols()], expires_at=record.expires_at
    )
    return connection_id


def test_a_batch_connection_gets_one_frame_per_round_holding_every_changed_symbol(
    ws: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    batch = _subscribed_to_the_20(ws, "batch-1", "batch", "u-batch")
    spec = _subscribed_to_the_20(ws, "spec-1", "spec", "u-spec")
    streaming = _container().streaming
    rounds = daily_quotes()
    for day, quotes in enumerate(rounds, start=1):
        broadcaster.clear()
        report = streaming.publish_quotes(quotes, broadcaster)
        assert (report.sent, report.connections, report.failed) == (21, 2, 0)
        (frame,) = broadcaster.messages_to(batch)
        assert frame["type"] == "batch"
        assert frame["seq"] == day  # one data message per round: 1, 2, 3, ...
        updates = frame["data"]["updates"]
        assert [u["data"]["symbol"] for u in updates] == [q.payload.symbol for q in quotes]
        assert [u["data"]["quote"]["price"] for u in updates] == [q.payload.price for q in quotes]
        # Each item is exactly the message the spec-format connection got, without its seq.
        singles = broadcaster.messages_to(spec)
        assert [m["seq"] for m in singles] == list(range(20 * (day - 1) + 1, 20 * day + 1))
        assert updates == [{k: v for k, v in m.items() if k != "seq"} for m in singles]
    # A round in which nothing changed sends nothing and uses no number; the next change continues the count.
    broadcaster.clear()
    assert streaming.publish_quotes(rounds[-1], broadcaster).sent == 0
    changed = [rounds[0][3]]  # one symbol back to its first day's close
    streaming.publish_quotes(changed, broadcaster)
    (frame,) = broadcaster.messages_to(batch)
    assert frame["seq"] == len(rounds) + 1
    assert [u["data"]["symbol"] for u in frame["data"]["updates"]] == [changed[0].payload.symbol]
    assert [m["seq"] for m in broadcaster.messages_to(spec)] == [20 * len(rounds) + 1]


def _container_with(
    redis_url: str, tmp_path: Path, transport: YahooReplayTransport, broadcaster: RecordingBroadcaster, **env: str
) -> Lambda:
    settings = load_settings(app_settings_env(redis_url, tmp_path, **env))
    bootstrap.use_container(bootstrap.Container(settings, replay_transport=transport, broadcaster=broadcaster))
    return Lambda()


@pytest.fixture
def small_frames(
    aws: None,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    replay_transport: YahooReplayTransport,
    broadcaster: RecordingBroadcaster,
) -> Iterator[Lambda]:
    """The smallest frame the settings allow: 1 KB."""
    yield _container_with(redis_url, tmp_path, replay_transport, broadcaster, WS_MAX_FRAME_BYTES="1024")
    bootstrap.use_container(None)


@pytest.fixture
def quick_resync(
    aws: None,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    replay_transport: YahooReplayTransport,
    broadcaster: RecordingBroadcaster,
) -> Iterator[Lambda]:
    """One resync per second per connection (the default is one per 10 s)."""
    yield _container_with(redis_url, tmp_path, replay_transport, broadcaster, WS_RESYNC_INTERVAL_SECONDS="1")
    bootstrap.use_container(None)


def test_a_round_larger_than_a_frame_is_split_into_frames_with_consecutive_seq(
    small_frames: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    cid = _subscribed_to_the_20(small_frames, "split-1", "batch", "u-split")
    streaming = _container().streaming
    seen: list[int] = []
    for quotes in daily_quotes()[:2]:
        broadcaster.clear()
        streaming.publish_quotes(quotes, broadcaster)
        frames = broadcaster.messages_to(cid)
        assert len(frames) > 1, "20 quote updates do not fit in 1 KB"
        sizes = [len(raw) for target, raw in broadcaster.raw if target == cid]
        assert max(sizes) <= 1024
        # Every changed item exactly once, in order, across the frames of the round.
        carried = [u["data"]["symbol"] for f in frames for u in f["data"]["updates"]]
        assert carried == [q.payload.symbol for q in quotes]
        seen.extend(f["seq"] for f in frames)
    assert seen == list(range(1, len(seen) + 1))


def test_an_older_round_is_dropped_and_its_values_are_sent_by_the_next_round(
    ws: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    cid = _subscribed_to_the_20(ws, "order-1", "batch", "u-order")
    streaming = _container().streaming
    day1, day2 = daily_quotes()[:2]
    assert streaming.publish_quotes(day1, broadcaster).sent == 1
    late = streaming.publish([quote_update(q) for q in day2], broadcaster, round_id=1)  # older than day 1's
    assert (late.sent, late.dropped) == (0, 1)
    assert [f["seq"] for f in broadcaster.messages_to(cid)] == [1]
    # The dropped round's values were forgotten, so the next round carries them (and the count goes on).
    assert streaming.publish_quotes(day2, broadcaster).sent == 1
    frames = broadcaster.messages_to(cid)
    assert [f["seq"] for f in frames] == [1, 2]
    assert [u["data"]["quote"]["price"] for u in frames[1]["data"]["updates"]] == [q.payload.price for q in day2]


def test_seq_counts_snapshots_and_updates_but_not_acks_pong_or_errors(
    ws: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    cid = _connected(ws, "seq-1")
    ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL", "MSFT"]}})
    ws.send(cid, {"type": "ping"})
    ws.send(cid, {"type": "hello"})
    ws.send(cid, {"type": "subscribe", "data": {"type": "market_data", "channels": ["indices"]}})
    _container().streaming.publish([quote_update(_aapl(123.0))], broadcaster)
    messages = broadcaster.messages_to(cid)
    assert [m["type"] for m in messages] == [
        "subscribed", "quote_update", "quote_update", "pong", "error", "subscribed", "market_update", "quote_update"
    ]  # fmt: skip
    assert [m.get("seq") for m in messages] == [None, 1, 2, None, None, None, 3, 4]


def test_resync_answers_with_a_snapshot_of_every_subscription_and_is_rate_limited(
    quick_resync: Lambda, broadcaster: RecordingBroadcaster
) -> None:
    spec = _connected(quick_resync, "rs-spec", "u1")
    assert quick_resync.connect("rs-batch", token=_token("u2"), query={"format": "batch"})["statusCode"] == 200
    for cid in (spec, "rs-batch"):
        quick_resync.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL", "MSFT"]}})
        quick_resync.send(cid, {"type": "subscribe", "data": {"type": "market_data", "channels": ["indices"]}})
    broadcaster.clear()
    quick_resync.send(spec, {"type": "resync"})
    snapshot = broadcaster.messages_to(spec)
    assert sorted(m["type"] for m in snapshot) == ["market_update", "quote_update", "quote_update"]
    assert all(m["data"]["snapshot"] is True for m in snapshot)
    assert [m["seq"] for m in snapshot] == [4, 5, 6]  # after the 3 snapshots of the two subscribes
    quick_resync.send("rs-batch", {"type": "resync"})
    (frame,) = broadcaster.messages_to("rs-batch")
    assert (frame["type"], frame["seq"]) == ("batch", 3)  # the subscribes' two snapshot frames were 1 and 2
    carried = {u["data"].get("symbol") or u["data"].get("channel") for u in frame["data"]["updates"]}
    assert carried == {"AAPL", "MSFT", "indices"}
    assert all(u["data"]["snapshot"] is True for u in frame["data"]["updates"])
    # A second resync within the interval is refused with an error (which has no seq); later it works.
    broadcaster.clear()
    quick_resync.send(spec, {"type": "resync"})
    (refused,) = broadcaster.messages_to(spec)
    assert (refused["type"], refused["data"]["code"]) == ("error", "resync_rate_limited")
    time.sleep(1.1)
    broadcaster.clear()
    quick_resync.send(spec, {"type": "resync"})
    assert [m["seq"] for m in broadcaster.messages_to(spec)] == [7, 8, 9]


def test_without_redis_updates_still_go_out_unsequenced(
    aws: None,
    tmp_path: Path,
    replay_transport: YahooReplayTransport,
    broadcaster: RecordingBroadcaster,
) -> None:
    """Degraded mode: with the sequencing store down, data messages are sent with seq 0 ("not sequenced")
    rather than withheld, and resync is not rate-limited."""
    from infra.local.run import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    settings = load_settings(app_settings_env(dead, tmp_path))
    bootstrap.use_container(bootstrap.Container(settings, replay_transport=replay_transport, broadcaster=broadcaster))
    try:
        ws = Lambda()
        batch = _subscribed_to_the_20(ws, "nr-batch", "batch", "u1")
        spec = _subscribed_to_the_20(ws, "nr-spec", "spec", "u2")
        report = _container().streaming.publish_quotes(daily_quotes()[0], broadcaster)
        assert report.sent == 21
        (frame,) = broadcaster.messages_to(batch)
        assert frame["seq"] == 0
        assert len(frame["data"]["updates"]) == 20
        assert {m["seq"] for m in broadcaster.messages_to(spec)} == {0}
        broadcaster.clear()
        ws.send(batch, {"type": "resync"})
        ws.send(batch, {"type": "resync"})
        assert [m["type"] for m in broadcaster.messages_to(batch)] == ["batch", "batch"]
    finally:
        bootstrap.use_container(None)
