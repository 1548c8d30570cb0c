"""The local WebSocket API's pure parts: connection ids, the $connect/$default/$disconnect events, the
management API's connection info, and reading the app's WebSocket handlers."""

from __future__ import annotations

import base64
import re
import sys
import types
from typing import Any

import pytest
from chalice.app import Chalice

from infra.local.lambda_runtime import websocket_handlers
from infra.local.websocket import (
    ConnectionContext,
    connect_event,
    connection_info,
    disconnect_event,
    message_event,
    new_connection_id,
    selected_subprotocol,
    status_code_of,
)

CONTEXT = ConnectionContext(
    connection_id="L0SM9cOFvHcCIhw=",
    connected_at=1_700_000_000.25,
    source_ip="127.0.0.7",
    user_agent="pytest",
    domain_name="127.0.0.1:8000",
    stage="local",
)
RECEIVED_AT = 1_700_000_001.5


def _common(context: dict[str, Any], route_key: str, event_type: str) -> None:
    assert context["routeKey"] == route_key
    assert context["eventType"] == event_type
    assert context["messageDirection"] == "IN"
    assert context["connectionId"] == "L0SM9cOFvHcCIhw="
    assert context["domainName"] == "127.0.0.1:8000"
    assert context["stage"] == "local"
    assert context["apiId"] == "local"
    assert context["connectedAt"] == 1_700_000_000_250
    assert context["requestTimeEpoch"] == 1_700_000_001_500
    assert context["requestTime"] == "14/Nov/2023:22:13:21 +0000"
    assert context["requestId"] == context["extendedRequestId"] == "req="
    assert context["identity"] == {"sourceIp": "127.0.0.7", "userAgent": "pytest"}


class TestConnectionId:
    def test_shaped_like_api_gateways(self) -> None:
        for _ in range(200):
            connection_id = new_connection_id()
            assert re.fullmatch(r"[A-Za-z0-9]{15}=", connection_id), connection_id
            assert len(base64.b64decode(connection_id, validate=True)) == 11

    def test_unique(self) -> None:
        assert len({new_connection_id() for _ in range(1000)}) == 1000


class TestConnectEvent:
    def test_shape(self) -> None:
        headers = [("Host", "127.0.0.1:8000"), ("Sec-WebSocket-Version", "13"), ("X-Multi", "a"), ("X-Multi", "b")]
        event = connect_event(CONTEXT, headers, [("token", "abc")], request_id="req=", received_at=RECEIVED_AT)
        assert event["headers"] == {"Host": "127.0.0.1:8000", "Sec-WebSocket-Version": "13", "X-Multi": "b"}
        assert event["multiValueHeaders"]["X-Multi"] == ["a", "b"]
        assert event["queryStringParameters"] == {"token": "abc"}
        assert event["multiValueQueryStringParameters"] == {"token": ["abc"]}
        assert event["isBase64Encoded"] is False
        assert "body" not in event
        _common(event["requestContext"], "$connect", "CONNECT")

    def test_no_query_string_leaves_the_parameters_out(self) -> None:
        event = connect_event(CONTEXT, [("Host", "h")], [], request_id="req=", received_at=RECEIVED_AT)
        assert "queryStringParameters" not in event
        assert "multiValueQueryStringParameters" not in event


class TestMessageEvent:
    def test_text(self) -> None:
        event = message_event(
            CONTEXT, '{"action":"subscribe"}', request_id="req=", message_id="m=", received_at=RECEIVED_AT
        )
        assert event["body"] == '{"action":"subscribe"}'
        assert event["isBase64Encoded"] is False
        assert event["requestContext"]["messageId"] == "m="
        _common(event["requestContext"], "$default", "MESSAGE")

    def test_binary_is_base64(self) -> None:
        event = message_event(CONTEXT, b"\x00\xff", request_id="req=", message_id="m=", received_at=RECEIVED_AT)
        assert event["isBase64Encoded"] is True
        assert base64.b64decode(event["body"]) == b"\x00\xff"


def test_disconnect_event() -> None:
    event = disconnect_event(CONTEXT, 1001, "Going away", request_id="req=", received_at=RECEIVED_AT)
    context = event["requestContext"]
    _common(context, "$disconnect", "DISCONNECT")
    assert context["disconnectStatusCode"] == 1001
    assert context["disconnectReason"] == "Going away"
    assert event["headers"]["Host"] == "127.0.0.1:8000"
    assert event["isBase64Encoded"] is False


def test_connection_info_is_the_wire_format_with_iso8601_times() -> None:
    assert connection_info(CONTEXT, RECEIVED_AT) == {
        "connectedAt": "2023-11-14T22:13:20.250Z",
        "identity": {"sourceIp": "127.0.0.7", "userAgent": "pytest"},
        "lastActiveAt": "2023-11-14T22:13:21.500Z",
    }


@pytest.mark.parametrize(
    ("result", "status"),
    [
        ({"statusCode": 200}, 200),
        ({"statusCode": 401, "body": "x"}, 401),
        ({"statusCode": "200"}, None),
        ({"statusCode": True}, None),
        ({"statusCode": 99}, None),
        ({}, None),
        (None, None),
        ([], None),
    ],
)
def test_status_code_of(result: object, status: int | None) -> None:
    assert status_code_of(result) == status


@pytest.mark.parametrize(
    ("result", "protocol"),
    [
        ({"statusCode": 200}, None),
        ({"statusCode": 200, "headers": {"sec-websocket-protocol": "v2"}}, "v2"),
        ({"statusCode": 200, "headers": {"Sec-WebSocket-Protocol": "json, v2"}}, "json"),
        ({"statusCode": 200, "multiValueHeaders": {"Sec-WebSocket-Protocol": ["v3"]}}, "v3"),
        ({"statusCode": 200, "headers": None}, None),
    ],
)
def test_selected_subprotocol(result: dict[str, Any], protocol: str | None) -> None:
    assert selected_subprotocol(result) == protocol


class TestWebsocketHandlers:
    def _install(self, monkeypatch: pytest.MonkeyPatch, chalice_app: Chalice) -> None:
        module = types.ModuleType("app")
        module.app = chalice_app  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "app", module)

    def test_route_keys_to_module_attributes(self, monkeypatch: pytest.MonkeyPatch) -> None:
        chalice_app = Chalice("t")

        @chalice_app.on_ws_connect()
        def on_ws_connect(event: Any) -> None:
            return None

        @chalice_app.on_ws_message()
        def on_ws_message(event: Any) -> None:
            return None

        @chalice_app.on_ws_disconnect()
        def on_ws_disconnect(event: Any) -> None:
            return None

        self._install(monkeypatch, chalice_app)
        assert websocket_handlers() == {
            "$connect": "on_ws_connect",
            "$default": "on_ws_message",
            "$disconnect": "on_ws_disconnect",
        }

    def test_none_defined(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._install(monkeypatch, Chalice("t"))
        assert websocket_handlers() == {}
