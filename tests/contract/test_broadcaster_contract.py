"""One contract for every Broadcaster: the real ApiGatewayBroadcaster over the local gateway's
management API (real HTTP, real sockets, real 410s) and the RecordingBroadcaster fake the app tests use,
so the fake cannot drift from what the service relies on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import websocket

from chalicelib.adapters.apigw_broadcaster import ApiGatewayBroadcaster, management_client
from chalicelib.ports import Broadcaster, DeliveryStatus
from infra.local.gateway import GatewayThread, build_app
from infra.local.lambda_runtime import RouteTable
from infra.local.websocket import CONNECTION_REGISTRY, websocket_registrar
from tests.fakes.broadcaster import RecordingBroadcaster


class AcceptEveryConnection:
    """The Invoker the gateway calls: $connect succeeds, nothing else matters here."""

    async def invoke(self, event: dict[str, Any], *, handler: str | None = None) -> dict[str, Any]:  # noqa: ARG002
        return {"statusCode": 200}


@dataclass
class Subject:
    broadcaster: Broadcaster
    open_id: str
    gone_id: str
    received: Any  # () -> the message the open connection got


@pytest.fixture(params=["api_gateway", "recording_fake"])
def subject(request: pytest.FixtureRequest, clean_env: pytest.MonkeyPatch) -> Iterator[Subject]:
    if request.param == "recording_fake":
        fake = RecordingBroadcaster()
        fake.gone.add("gone-connection")
        yield Subject(fake, "open-connection", "gone-connection", lambda: fake.messages_to("open-connection")[-1])
        return
    handlers = {"$connect": "on_ws_connect", "$default": "on_ws_message", "$disconnect": "on_ws_disconnect"}
    app = build_app(RouteTable(()), AcceptEveryConnection(), registrars=[websocket_registrar(handlers)])
    with GatewayThread(app) as gateway:
        client = websocket.create_connection(gateway.url.replace("http://", "ws://") + "/", timeout=10)
        try:
            (open_id,) = app[CONNECTION_REGISTRY].ids()
            real = ApiGatewayBroadcaster(management_client(gateway.url, "us-east-1", pool_size=4, timeout_seconds=3))
            yield Subject(real, open_id, "bm8tc3VjaC1jb25uPQ=", lambda: json.loads(client.recv()))
        finally:
            client.close()


def test_an_open_connection_gets_the_message(subject: Subject) -> None:
    assert subject.broadcaster.send(subject.open_id, b'{"type":"pong"}') is DeliveryStatus.SENT
    assert subject.received() == {"type": "pong"}


def test_a_gone_connection_is_reported_gone(subject: Subject) -> None:
    assert subject.broadcaster.send(subject.gone_id, b"{}") is DeliveryStatus.GONE


def test_send_many_answers_in_the_order_of_the_deliveries(subject: Subject) -> None:
    deliveries = [(subject.gone_id, b"{}"), (subject.open_id, b'{"n":1}'), (subject.gone_id, b"{}")]
    assert subject.broadcaster.send_many(deliveries) == [DeliveryStatus.GONE, DeliveryStatus.SENT, DeliveryStatus.GONE]
    assert subject.received() == {"n": 1}
    assert subject.broadcaster.send_many([]) == []


def test_close_ends_the_connection_and_later_posts_are_gone(subject: Subject) -> None:
    assert subject.broadcaster.close(subject.open_id) is DeliveryStatus.SENT
    assert subject.broadcaster.send(subject.open_id, b"{}") is DeliveryStatus.GONE
    assert subject.broadcaster.close(subject.open_id) is DeliveryStatus.GONE
    assert subject.broadcaster.close(subject.gone_id) is DeliveryStatus.GONE
