"""WebSocket streaming end to end over real sockets: the local gateway (emulating API Gateway's WebSocket
and management APIs), the real Chalice handlers in Lambda worker processes, moto's server for DynamoDB,
our own Redis, and the replay source. Publishing goes through the same StreamingService.publish the
refresh jobs call, posting to the gateway's @connections API over HTTP."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websocket

from chalicelib.bootstrap import Container
from chalicelib.models.streaming import quote_update
from chalicelib.ports import ConnectionRecord, DeliveryStatus
from chalicelib.settings import load_settings
from infra.local.gateway import GatewayThread
from infra.local.lambda_runtime import websocket_handlers
from infra.local.replay.transport import YahooReplayTransport
from infra.local.run import free_port
from infra.local.token import issue_dev_token
from infra.local.websocket import CONNECTION_REGISTRY, WebSocketLimits, websocket_registrar
from tests.integration.conftest import in_process_gateway, stack_environment
from tests.real_rounds import daily_quotes
from tests.ws_protocol import assert_server_message

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).parent / "js"
PREFIX = "wsit:"


class Stack:
    def __init__(self, gateway: GatewayThread, env: dict[str, str]) -> None:
        self.gateway = gateway
        self.env = env
        self.ws_url = gateway.url.replace("http://", "ws://") + "/api/v1/market/ws/market-data"

    def publisher(self, tmp_path: Path) -> Container:
        """A container as a refresh job builds it: the stack's tables, Redis and management endpoint."""
        settings = load_settings({**self.env, "YFINANCE_CACHE_DIR": str(tmp_path / "yf")})
        return Container(settings, replay_transport=YahooReplayTransport())

    @property
    def registry(self) -> Any:
        return self.gateway._app[CONNECTION_REGISTRY]  # the emulator's own view, for asserts


@pytest.fixture(scope="module")
def stack(moto_endpoint: str, redis_url: str) -> Iterator[Stack]:
    port = free_port()
    extra = {
        "CACHE_KEY_PREFIX": PREFIX,
        "WEBSOCKET_MANAGEMENT_ENDPOINT": f"http://127.0.0.1:{port}",
        "WS_MAX_CONNECTIONS_PER_USER": "3",
    }
    registrar = websocket_registrar(websocket_handlers(), limits=WebSocketLimits(idle_timeout_seconds=30))
    with (
        stack_environment(moto_endpoint, redis_url, **extra) as env,
        in_process_gateway(moto_endpoint, redis_url, registrars=[registrar], port=port) as gateway,
    ):
        yield Stack(gateway, env)


def _receive_until(ws: websocket.WebSocket, wanted: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    """Every message up to and including the first of type ``wanted``."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.1, deadline - time.monotonic()))
        message = json.loads(ws.recv())
        assert_server_message(message)  # every message a test receives is one the AsyncAPI document describes
        seen.append(message)
        if message["type"] == wanted:
            return seen
    raise AssertionError(f"no {wanted!r} within {timeout} s; got {[m['type'] for m in seen]}")


def _open(stack: Stack, subject: str = "it-user") -> websocket.WebSocket:
    return websocket.create_connection(f"{stack.ws_url}?token={issue_dev_token(subject)}", timeout=15)


@pytest.mark.timeout(120)
def test_the_specs_javascript_example_gets_acks_snapshots_and_then_updates(stack: Stack, tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js runs the spec's JavaScript example (the machine has it; see README)"
    url = f"{stack.ws_url}?token={issue_dev_token('js-user')}"
    process = subprocess.Popen(
        [node, "--experimental-websocket", str(JS_DIR / "harness.js"), str(JS_DIR / "spec_websocket_example.js"), url,
         "40"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def pump() -> None:
        for line in process.stdout or ():
            lines.put(json.loads(line))

    def next_message(timeout: float = 20) -> dict[str, Any]:
        message = lines.get(timeout=timeout)
        if "harness" not in message:  # the harness's own close notice is not a protocol message
            assert_server_message(message)
        return message

    threading.Thread(target=pump, daemon=True).start()

    try:
        received: list[dict[str, Any]] = []
        acks: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while len(acks) < 2 and time.monotonic() < deadline:
            message = next_message()
            received.append(message)
            if message.get("type") == "subscribed":
                acks.append(message)
        assert len(acks) == 2, received
        # The two sends may be handled in either order (API Gateway invokes $default concurrently); the
        # last ack holds the whole set either way.
        final = max(
            acks, key=lambda a: len(a["data"]["subscriptions"]["channels"]) + len(a["data"]["subscriptions"]["symbols"])
        )
        assert final["data"]["subscriptions"] == {
            "channels": ["indices", "sentiment"],
            "symbols": ["AAPL", "GOOGL", "MSFT"],
        }
        # Snapshots right after the acks: every symbol of the example trades on the replay day.
        while not {"market_update", "sentiment_update"} <= {m.get("type") for m in received} or {
            m["data"]["symbol"] for m in received if m.get("type") == "quote_update"
        } != {"AAPL", "GOOGL", "MSFT"}:
            received.append(next_message())
        assert all(m["data"]["snapshot"] for m in received if m.get("type", "").endswith("_update"))

        # Then an update, as a refresh job publishes it.
        publisher = stack.publisher(tmp_path)
        aapl = publisher.market_data.get_quote("AAPL")
        report = publisher.streaming.publish([quote_update(aapl)], publisher.broadcaster())
        assert report.sent == 1
        while True:
            message = next_message()
            received.append(message)
            if message.get("type") == "quote_update" and not message["data"]["snapshot"]:
                break
        assert message["data"]["symbol"] == "AAPL"
        assert message["data"]["quote"]["price"] == aapl.payload.price
        assert message["data"]["source"] == "replay"
        # The default format is the spec's messages plus seq: every data message numbered 1, 2, 3... with no
        # gap (the two subscribes run concurrently, so their snapshots may interleave), the update last.
        data = [m for m in received if m.get("type", "").endswith("_update")]
        assert sorted(m["seq"] for m in data) == list(range(1, len(data) + 1))
        assert message["seq"] == len(data)
    finally:
        process.kill()
        process.wait()


def test_connect_without_or_with_a_bad_token_is_refused_before_the_socket_opens(stack: Stack) -> None:
    for url in (stack.ws_url, f"{stack.ws_url}?token=not-a-jwt"):
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, timeout=10)
        assert refused.value.status_code == 401
    assert len(stack.registry) == 0


def test_an_unknown_format_is_refused_with_400_before_the_socket_opens(stack: Stack) -> None:
    before = len(stack.registry)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        websocket.create_connection(f"{stack.ws_url}?token={issue_dev_token('fmt-user')}&format=xml", timeout=10)
    assert refused.value.status_code == 400
    assert len(stack.registry) == before


def test_a_batch_connection_gets_one_numbered_frame_per_round_and_a_resync_snapshot(
    stack: Stack, tmp_path: Path
) -> None:
    url = f"{stack.ws_url}?token={issue_dev_token('batch-user')}&format=batch"
    ws = websocket.create_connection(url, timeout=15)
    try:
        ws.send(json.dumps({"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL", "MSFT"]}}))
        ack, snapshot = _receive_until(ws, "batch")
        assert ack["type"] == "subscribed"
        assert snapshot["seq"] == 1
        assert sorted(u["data"]["symbol"] for u in snapshot["data"]["updates"]) == ["AAPL", "MSFT"]
        assert all(u["data"]["snapshot"] for u in snapshot["data"]["updates"])
        # Two refresh rounds of real prices for 20 symbols: this connection gets one frame per round
        # holding its two, numbered 2 and 3.
        publisher = stack.publisher(tmp_path)
        for expected_seq, quotes in enumerate(daily_quotes()[:2], start=2):
            report = publisher.streaming.publish_quotes(quotes, publisher.broadcaster())
            assert report.failed == 0
            (frame,) = _receive_until(ws, "batch")
            assert frame["seq"] == expected_seq
            prices = {u["data"]["symbol"]: u["data"]["quote"]["price"] for u in frame["data"]["updates"]}
            assert prices == {q.payload.symbol: q.payload.price for q in quotes if q.payload.symbol in ("AAPL", "MSFT")}
        ws.send(json.dumps({"type": "resync"}))
        (resync,) = _receive_until(ws, "batch")
        assert resync["seq"] == 4
        assert all(u["data"]["snapshot"] for u in resync["data"]["updates"])
        ws.send(json.dumps({"type": "resync"}))
        (refused,) = _receive_until(ws, "error")
        assert refused["data"]["code"] == "resync_rate_limited"
    finally:
        ws.close()


def test_per_user_cap_refuses_the_connection_past_the_limit(stack: Stack) -> None:
    held = [_open(stack, "capped-user") for _ in range(3)]
    try:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            _open(stack, "capped-user")
        assert refused.value.status_code == 429
    finally:
        for ws in held:
            ws.close()


def test_bad_input_gets_an_error_frame_and_the_socket_stays_open(stack: Stack) -> None:
    ws = _open(stack, "bad-input-user")
    try:
        weather = {"type": "subscribe", "data": {"type": "market_data", "channels": ["weather"]}}
        spaced = {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["A B"]}}
        for body, code in (
            ("{nope", "invalid_json"),
            (json.dumps(weather), "unknown_channel"),
            (json.dumps(spaced), "invalid_symbol"),
            (json.dumps({"type": "ping", "pad": "x" * 20_000}), "message_too_large"),
        ):
            ws.send(body)
            (error,) = _receive_until(ws, "error")
            assert error["data"]["code"] == code
        ws.send(json.dumps({"type": "ping"}))
        assert _receive_until(ws, "pong")[-1]["type"] == "pong"
    finally:
        ws.close()


def test_disconnect_removes_the_connection_and_its_subscriptions(stack: Stack, tmp_path: Path) -> None:
    ws = _open(stack, "leaving-user")
    ws.send(json.dumps({"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["QQQ"]}}))
    _receive_until(ws, "subscribed")
    store = stack.publisher(tmp_path).connection_store
    assert len(store.subscribers("quote:QQQ", now=time.time())) == 1
    ws.close()
    deadline = time.monotonic() + 10
    while store.subscribers("quote:QQQ", now=time.time()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert store.subscribers("quote:QQQ", now=time.time()) == []


def test_a_410_during_fan_out_deletes_the_stale_connection(stack: Stack, tmp_path: Path) -> None:
    """A connection API Gateway has lost without our $disconnect running (so DynamoDB still lists it):
    the management API answers 410 GoneException, and fan-out deletes it and its subscriptions."""
    publisher = stack.publisher(tmp_path)
    store = publisher.connection_store
    ghost = "Z2hvc3QtY29ubj0="
    connected_at = publisher.market_data.get_quote("SPY").provenance.retrieved_at
    record = ConnectionRecord(ghost, "ghost-user", connected_at=connected_at, expires_at=int(time.time()) + 3600)
    store.add_connection(record)
    store.add_subscriptions(ghost, ["quote:SPY"], expires_at=record.expires_at)
    # Written past the service, so the registry's copy and the shard's copy in Redis are read again (as a
    # refresh and a worker do once their copy is old); a connection subscribed through $default records
    # its change in both copies itself.
    publisher.streaming.read_registry()
    publisher.streaming.read_shards([record.shard])
    live = _open(stack, "live-user")
    try:
        live.send(json.dumps({"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["SPY"]}}))
        _receive_until(live, "subscribed")
        report = publisher.streaming.publish(
            [quote_update(publisher.market_data.get_quote("SPY"))], publisher.broadcaster()
        )
        assert (report.sent, report.gone) == (1, 1)
        assert report.gone_connections == [ghost]
        assert store.get_connection(ghost, now=time.time()) is None
        assert len(store.subscribers("quote:SPY", now=time.time())) == 1
        update = _receive_until(live, "quote_update")[-1]
        while update["data"]["snapshot"]:
            update = _receive_until(live, "quote_update")[-1]
        assert update["data"]["symbol"] == "SPY"
    finally:
        live.close()


def test_the_broadcaster_against_the_management_api(stack: Stack, tmp_path: Path) -> None:
    """ApiGatewayBroadcaster over real HTTP: SENT to an open connection, GONE for an unknown one."""
    broadcaster = stack.publisher(tmp_path).broadcaster()
    before = set(stack.registry.ids())
    ws = _open(stack, "bc-user")
    try:
        (connection_id,) = set(stack.registry.ids()) - before
        statuses = broadcaster.send_many([(connection_id, b'{"type":"hello"}'), ("bm8tc3VjaC1jb25uPQ=", b"{}")])
        assert statuses == [DeliveryStatus.SENT, DeliveryStatus.GONE]
        assert json.loads(ws.recv()) == {"type": "hello"}
    finally:
        ws.close()


def test_ws_stats_over_rest(stack: Stack) -> None:
    ws = _open(stack, "stats-user")
    try:
        ws.send(json.dumps({"type": "subscribe", "data": {"type": "market_data", "channels": ["sectors"]}}))
        _receive_until(ws, "subscribed")
        response = requests.get(
            f"{stack.gateway.url}/api/v1/market/ws/stats",
            headers={"Authorization": f"Bearer {issue_dev_token(operator=True)}"},
            timeout=10,
        )
        assert response.status_code == 200
        body = response.json()
        assert body["open_connections"] >= 1
        assert {"topic": "channel:sectors", "subscribers": 1} in body["top_topics"]
    finally:
        ws.close()


def test_the_subprotocol_token_is_accepted_and_only_bearer_is_selected(stack: Stack) -> None:
    token = issue_dev_token("subprotocol-user")
    ws = websocket.create_connection(stack.ws_url, subprotocols=["bearer", token], timeout=15)
    try:
        assert ws.getsubprotocol() == "bearer"
        assert token not in json.dumps(ws.getheaders())
        ws.send(json.dumps({"type": "ping"}))
        assert _receive_until(ws, "pong")[-1]["type"] == "pong"
    finally:
        ws.close()


@pytest.mark.timeout(120)
def test_a_burst_over_the_budget_gets_rate_limited_then_the_server_closes_the_socket(stack: Stack) -> None:
    # The stage's defaults: 60 units per connection (a resync costs 5), closed at the 10th refusal in 60 s.
    ws = _open(stack, "burst-user")
    try:
        for _ in range(40):
            ws.send(json.dumps({"type": "resync"}))
        codes: list[str] = []
        ws.settimeout(15)
        while (frame := ws.recv()) != "":  # "" once the server's close frame arrived
            message = json.loads(frame)
            assert_server_message(message)
            if message["type"] == "error":
                codes.append(message["data"]["code"])
        assert not ws.connected
        assert codes.count("rate_limited") >= 10
    finally:
        ws.close()
