"""The local WebSocket API over real sockets: handshakes, events, the management API through a real
boto3 `apigatewaymanagementapi` client, and API Gateway's limits (shortened)."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
import requests
import websocket
from botocore.config import Config

from infra.local.gateway import GatewayThread, build_app
from infra.local.lambda_runtime import Route, RouteTable
from infra.local.websocket import CONNECTION_REGISTRY, ConnectionRegistry, WebSocketLimits, websocket_registrar

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

HANDLERS = {"$connect": "on_ws_connect", "$default": "on_ws_message", "$disconnect": "on_ws_disconnect"}
WS_PATH = "/api/v1/market/ws/market-data"


class FakeWebSocketFunctions:
    """Stands in for the Lambda pool: records (handler, event) and answers $connect with connect_result."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, dict[str, Any]]] = []
        self.connect_result: dict[str, Any] | Exception = {"statusCode": 200}
        self._lock = threading.Lock()

    async def invoke(self, event: dict[str, Any], *, handler: str | None = None) -> dict[str, Any]:
        with self._lock:
            self.calls.append((handler, event))
        route_key = event["requestContext"]["routeKey"]
        if route_key == "$connect":
            if isinstance(self.connect_result, Exception):
                raise self.connect_result
            return self.connect_result
        if event.get("body") == "boom":
            raise RuntimeError("handler blew up")
        if event.get("body") == "slow":
            await asyncio.sleep(0.3)
        return {"statusCode": 200}

    def events(self, route_key: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for _, event in self.calls if event["requestContext"]["routeKey"] == route_key]

    def wait_for(self, route_key: str, count: int = 1, timeout: float = 3.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.events(route_key)) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{count} {route_key} event(s) expected, got {len(found)}")
            time.sleep(0.01)
        return found


class Gateway:
    def __init__(self, thread: GatewayThread, registry: ConnectionRegistry) -> None:
        self.thread = thread
        self.registry = registry
        self.clients: list[Any] = []

    @property
    def url(self) -> str:
        return self.thread.url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + WS_PATH

    def management(self, stage: str = "") -> Any:
        """A real boto3 management API client on this gateway (what a handler's post_to_connection uses)."""
        client = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=self.url + (f"/{stage}" if stage else ""),
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 1}),
        )
        self.clients.append(client)
        return client

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        self.thread.stop()


@pytest.fixture
def functions() -> FakeWebSocketFunctions:
    return FakeWebSocketFunctions()


@pytest.fixture
def start_gateway(functions: FakeWebSocketFunctions) -> Iterator[Callable[..., Gateway]]:
    gateways: list[Gateway] = []

    def start(limits: WebSocketLimits | None = None) -> Gateway:
        limits = limits or WebSocketLimits()
        table = RouteTable((Route("/api/v1/market/quote/{symbol}", frozenset({"GET"})),))
        app = build_app(table, functions, registrars=[websocket_registrar(HANDLERS, limits=limits)])
        gateway = Gateway(GatewayThread(app, shutdown_timeout=1.0).start(), app[CONNECTION_REGISTRY])
        gateways.append(gateway)
        return gateway

    yield start
    for gateway in gateways:
        gateway.stop()


@pytest.fixture
def gateway(start_gateway: Callable[..., Gateway]) -> Gateway:
    return start_gateway()


_clients: list[websocket.WebSocket] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        client = _clients.pop()
        client.close()
        client.shutdown()  # type: ignore[no-untyped-call]  # after answering a server's close frame, close() leaves the socket open


def connect(gateway: Gateway, path: str = WS_PATH, **options: Any) -> websocket.WebSocket:
    url = gateway.url.replace("http://", "ws://") + path
    client = websocket.create_connection(url, timeout=3, **options)
    _clients.append(client)
    return client


def connection_id(functions: FakeWebSocketFunctions) -> str:
    connection: str = functions.wait_for("$connect")[-1]["requestContext"]["connectionId"]
    return connection


def receive_close(client: websocket.WebSocket) -> tuple[int, str]:
    while True:
        opcode, data = client.recv_data(control_frame=True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", data[:2])[0], data[2:].decode()


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.01)


# --- $connect. ---


def test_connect_accepted_registers_the_connection_with_api_gateways_event(
    gateway: Gateway, functions: FakeWebSocketFunctions
) -> None:
    client = connect(gateway, WS_PATH + "?token=abc&x=1&x=2", header=["User-Agent: ws-test"])
    try:
        (handler, event), *_ = functions.calls
        assert handler == "on_ws_connect"
        context = event["requestContext"]
        assert context["routeKey"] == "$connect"
        assert context["eventType"] == "CONNECT"
        assert context["domainName"] == gateway.url.removeprefix("http://")
        assert context["identity"] == {"sourceIp": "127.0.0.1", "userAgent": "ws-test"}
        assert event["queryStringParameters"] == {"token": "abc", "x": "2"}
        assert event["multiValueQueryStringParameters"]["x"] == ["1", "2"]
        assert event["headers"]["Upgrade"].lower() == "websocket"
        assert gateway.registry.ids() == [context["connectionId"]]
    finally:
        client.close()


@pytest.mark.parametrize(
    ("result", "status"),
    [
        ({"statusCode": 401, "body": '{"error": {"code": "unauthorized"}}'}, 401),
        ({"statusCode": 403}, 403),
        (RuntimeError("handler blew up"), 502),
        ({"body": "no status"}, 502),
    ],
)
def test_connect_refused_answers_the_handshake_with_the_status(
    gateway: Gateway, functions: FakeWebSocketFunctions, result: dict[str, Any] | Exception, status: int
) -> None:
    functions.connect_result = result
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(gateway)
    assert refused.value.status_code == status
    assert len(gateway.registry) == 0
    time.sleep(0.1)
    assert functions.events("$disconnect") == []


def test_refusal_body_is_the_handlers_json(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    functions.connect_result = {"statusCode": 401, "body": '{"error": {"code": "unauthorized"}}'}
    response = requests.get(
        gateway.url + WS_PATH,
        headers={
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode(),
        },
        timeout=3,
    )
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "unauthorized"}}


def test_subprotocol_selected_only_when_the_connect_result_names_it(
    gateway: Gateway, functions: FakeWebSocketFunctions
) -> None:
    functions.connect_result = {"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "v2"}}
    client = connect(gateway, subprotocols=["json", "v2"])
    assert client.getsubprotocol() == "v2"
    client.close()

    functions.connect_result = {"statusCode": 200}
    # As a browser does, websocket-client fails a handshake that selects none of its subprotocols.
    with pytest.raises(websocket.WebSocketException, match="Invalid WebSocket Header") as failed:
        connect(gateway, subprotocols=["json"])
    assert not isinstance(failed.value, websocket.WebSocketBadStatusException)  # the upgrade itself was accepted


@pytest.mark.parametrize("path", [WS_PATH, "/api/v1/market/ws/stock-quotes", "/"])
def test_every_websocket_path_upgrades(gateway: Gateway, functions: FakeWebSocketFunctions, path: str) -> None:
    client = connect(gateway, path)
    assert len(gateway.registry) == 1
    client.close()


@pytest.mark.parametrize("path", ["/", WS_PATH])
def test_a_plain_get_still_gets_the_rest_404(gateway: Gateway, functions: FakeWebSocketFunctions, path: str) -> None:
    response = requests.get(gateway.url + path, timeout=3)
    assert response.status_code == 404
    assert response.json()["error"]["message"] == f"no route for GET {path}"
    assert functions.calls == []


# --- $default. ---


def test_text_message_event(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    client = connect(gateway)
    client.send('{"action": "subscribe", "symbols": ["AAPL"]}')
    (event,) = functions.wait_for("$default")
    context = event["requestContext"]
    assert context["eventType"] == "MESSAGE"
    assert context["connectionId"] == connection_id(functions)
    assert context["messageId"]
    assert context["connectedAt"] <= context["requestTimeEpoch"]
    assert event["body"] == '{"action": "subscribe", "symbols": ["AAPL"]}'
    assert event["isBase64Encoded"] is False
    assert functions.calls[-1][0] == "on_ws_message"
    client.close()


def test_binary_message_is_base64(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    client = connect(gateway)
    client.send_binary(b"\x00\xff\xfe")
    (event,) = functions.wait_for("$default")
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\xff\xfe"
    client.close()


def test_a_failed_invocation_leaves_the_connection_open(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    client = connect(gateway)
    client.send("boom")
    client.send("after")
    assert [event["body"] for event in functions.wait_for("$default", 2)] == ["boom", "after"]
    gateway.management().post_to_connection(ConnectionId=connection_id(functions), Data=b"still here")
    received = [client.recv(), client.recv()]
    assert "still here" in received
    (error,) = [json.loads(frame) for frame in received if frame != "still here"]
    # API Gateway's frame for a failed integration, with the connection and request ids.
    assert error["message"] == "Internal server error"
    assert error["connectionId"] == connection_id(functions)
    assert error["requestId"]
    client.close()


def test_invocations_for_one_connection_run_concurrently(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    client = connect(gateway)
    started = time.monotonic()
    for _ in range(5):
        client.send("slow")  # each takes 0.3 s
    functions.wait_for("$default", 5)
    client.send("marker")
    functions.wait_for("$default", 6)
    assert time.monotonic() - started < 1.0
    client.close()


# --- Management API. ---


def test_post_to_connection_delivers_text_and_binary_frames(
    gateway: Gateway, functions: FakeWebSocketFunctions
) -> None:
    client = connect(gateway)
    management = gateway.management()
    management.post_to_connection(ConnectionId=connection_id(functions), Data=b'{"type": "quote"}')
    assert client.recv() == '{"type": "quote"}'
    management.post_to_connection(ConnectionId=connection_id(functions), Data=b"\xff\x00")
    opcode, data = client.recv_data()
    assert (opcode, data) == (websocket.ABNF.OPCODE_BINARY, b"\xff\x00")
    client.close()


def test_concurrent_posts_each_arrive_as_one_whole_frame(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    client = connect(gateway)
    management = gateway.management()
    target = connection_id(functions)
    messages = [f'{{"n": {n}, "pad": "{"x" * 20_000}"}}' for n in range(40)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda data: management.post_to_connection(ConnectionId=target, Data=data.encode()), messages))
    received = [client.recv() for _ in messages]
    assert sorted(received) == sorted(messages)
    client.close()


def test_get_connection_info(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    client = connect(gateway, header=["User-Agent: ws-test"])
    info = gateway.management().get_connection(ConnectionId=connection_id(functions))
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "ws-test"}
    assert abs(info["ConnectedAt"].timestamp() - time.time()) < 5
    assert info["LastActiveAt"] >= info["ConnectedAt"]
    client.close()


def test_stage_prefixed_endpoint(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    client = connect(gateway)
    management = gateway.management(stage="local")
    management.post_to_connection(ConnectionId=connection_id(functions), Data=b"via stage")
    assert client.recv() == "via stage"
    assert management.get_connection(ConnectionId=connection_id(functions))["Identity"]["SourceIp"] == "127.0.0.1"
    client.close()


def test_delete_closes_with_1000_and_fires_disconnect_once(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    client = connect(gateway)
    target = connection_id(functions)
    management = gateway.management()
    management.delete_connection(ConnectionId=target)
    assert receive_close(client)[0] == 1000
    (event,) = functions.wait_for("$disconnect")
    assert event["requestContext"]["connectionId"] == target
    assert event["requestContext"]["disconnectStatusCode"] == 1000
    assert functions.calls[-1][0] == "on_ws_disconnect"
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=target, Data=b"x")
    with pytest.raises(management.exceptions.GoneException):
        management.delete_connection(ConnectionId=target)
    time.sleep(0.2)
    assert len(functions.events("$disconnect")) == 1
    assert len(gateway.registry) == 0


def test_unknown_connection_is_gone(gateway: Gateway) -> None:
    management = gateway.management()
    calls: list[Callable[[], Any]] = [
        lambda: management.post_to_connection(ConnectionId="Sz1XdcAnoAMCKfg=", Data=b"x"),
        lambda: management.get_connection(ConnectionId="Sz1XdcAnoAMCKfg="),
        lambda: management.delete_connection(ConnectionId="Sz1XdcAnoAMCKfg="),
    ]
    for call in calls:
        with pytest.raises(management.exceptions.GoneException) as gone:
            call()
        assert gone.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410


def test_client_close_fires_disconnect_then_posts_are_gone(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    client = connect(gateway)
    target = connection_id(functions)
    client.close(status=1000, reason=b"bye")
    (event,) = functions.wait_for("$disconnect")
    assert event["requestContext"]["eventType"] == "DISCONNECT"
    assert event["requestContext"]["disconnectStatusCode"] == 1000
    assert event["requestContext"]["disconnectReason"] == "bye"
    management = gateway.management()
    with pytest.raises(management.exceptions.GoneException):
        management.post_to_connection(ConnectionId=target, Data=b"x")


def test_dropped_tcp_connection_is_1006(gateway: Gateway, functions: FakeWebSocketFunctions) -> None:
    client = connect(gateway)
    assert client.sock is not None
    client.sock.close()  # no close frame
    (event,) = functions.wait_for("$disconnect")
    assert event["requestContext"]["disconnectStatusCode"] == 1006


def test_post_over_128_kb_is_413_and_exactly_128_kb_is_delivered(
    gateway: Gateway, functions: FakeWebSocketFunctions
) -> None:
    client = connect(gateway)
    management = gateway.management()
    with pytest.raises(management.exceptions.PayloadTooLargeException) as too_large:
        management.post_to_connection(ConnectionId=connection_id(functions), Data=b"x" * (128 * 1024 + 1))
    assert too_large.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    management.post_to_connection(ConnectionId=connection_id(functions), Data=b"y" * (128 * 1024))
    assert client.recv() == "y" * (128 * 1024)
    client.close()


# --- Limits. ---


def test_idle_timeout_closes_with_1001_and_client_frames_reset_it(
    start_gateway: Callable[..., Gateway], functions: FakeWebSocketFunctions
) -> None:
    gateway = start_gateway(WebSocketLimits(idle_timeout_seconds=0.4, max_connection_seconds=10))
    client = connect(gateway)
    started = time.monotonic()
    time.sleep(0.25)
    client.ping()
    assert receive_close(client) == (1001, "Going away")
    assert 0.6 <= time.monotonic() - started < 1.5
    (event,) = functions.wait_for("$disconnect")
    assert event["requestContext"]["disconnectStatusCode"] == 1001
    assert event["requestContext"]["disconnectReason"] == "Going away"


def test_max_connection_duration_closes_an_active_connection(
    start_gateway: Callable[..., Gateway], functions: FakeWebSocketFunctions
) -> None:
    gateway = start_gateway(WebSocketLimits(idle_timeout_seconds=10, max_connection_seconds=0.5))
    client = connect(gateway)
    started = time.monotonic()
    client.send("keeping busy")
    assert receive_close(client)[0] == 1001
    assert 0.5 <= time.monotonic() - started < 1.5
    assert functions.wait_for("$disconnect")[0]["requestContext"]["disconnectStatusCode"] == 1001


def test_oversize_client_message_closes_with_1009(
    start_gateway: Callable[..., Gateway], functions: FakeWebSocketFunctions
) -> None:
    gateway = start_gateway(WebSocketLimits(max_message_bytes=1024))
    client = connect(gateway)
    client.send("x" * 1024)  # at the limit: delivered
    assert functions.wait_for("$default")[0]["body"] == "x" * 1024
    client.send("x" * 1025)
    assert receive_close(client)[0] == 1009
    (event,) = functions.wait_for("$disconnect")
    assert event["requestContext"]["disconnectStatusCode"] == 1009
    assert len(functions.events("$default")) == 1


def test_shutdown_closes_sockets_with_1001_and_fires_disconnect(
    start_gateway: Callable[..., Gateway], functions: FakeWebSocketFunctions
) -> None:
    gateway = start_gateway()
    clients = [connect(gateway) for _ in range(3)]
    functions.wait_for("$connect", 3)
    stopper = threading.Thread(target=gateway.thread.stop)
    stopper.start()
    assert [receive_close(client)[0] for client in clients] == [1001, 1001, 1001]
    stopper.join(5)
    events = functions.wait_for("$disconnect", 3)
    assert {event["requestContext"]["disconnectStatusCode"] for event in events} == {1001}


def test_raw_management_http_percent_encoded_id_and_gone_shape(
    gateway: Gateway, functions: FakeWebSocketFunctions
) -> None:
    client = connect(gateway)
    encoded = connection_id(functions).replace("=", "%3D")
    response = requests.post(f"{gateway.url}/@connections/{encoded}", data=b"raw", timeout=3)
    assert (response.status_code, response.content) == (200, b"")
    assert client.recv() == "raw"
    gone = requests.post(f"{gateway.url}/@connections/Sz1XdcAnoAMCKfg%3D", data=b"x", timeout=3)
    assert gone.status_code == 410
    assert gone.headers["x-amzn-ErrorType"] == "GoneException"
    assert gone.json() == {"message": None}


def test_management_usage_counts_every_post_and_bills_per_started_32_kb(
    gateway: Gateway, functions: FakeWebSocketFunctions
) -> None:
    client = connect(gateway)
    target = connection_id(functions).replace("=", "%3D")
    for size in (10, 32 * 1024, 32 * 1024 + 1):
        assert requests.post(f"{gateway.url}/@connections/{target}", data=b"x" * size, timeout=3).status_code == 200
        assert len(client.recv()) == size
    assert requests.post(f"{gateway.url}/@connections/Sz1XdcAnoAMCKfg%3D", data=b"x", timeout=3).status_code == 410
    usage = requests.get(f"{gateway.url}/_local/management-usage", timeout=3).json()
    # Four calls against the request rate (the 410 too); 1 + 1 + 2 + 1 billed 32 KB messages.
    assert usage == {"posts": 4, "bytes_posted": 10 + 32 * 1024 + 32 * 1024 + 1 + 1, "billed_messages": 5}
