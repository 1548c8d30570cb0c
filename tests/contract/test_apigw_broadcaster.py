"""ApiGatewayBroadcaster's retry and outcome rules, at the SDK boundary (botocore's Stubber answers the
calls the real client makes). Delivery over real HTTP to the local management API, 410s included, is
in tests/integration/test_websocket_stack.py."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.adapters.apigw_broadcaster import ApiGatewayBroadcaster
from chalicelib.ports import DeliveryStatus


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "apigatewaymanagementapi",
        endpoint_url="https://abc123.execute-api.us-east-1.amazonaws.com/prod",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _broadcaster(client: Any, **kwargs: Any) -> ApiGatewayBroadcaster:
    return ApiGatewayBroadcaster(client, retry_base_seconds=0.001, retry_max_seconds=0.002, **kwargs)


def _error(stubber: Stubber, code: str, status: int) -> None:
    stubber.add_client_error("post_to_connection", service_error_code=code, http_status_code=status)


def _ok(stubber: Stubber, connection_id: str = "c1") -> None:
    stubber.add_response("post_to_connection", {}, {"ConnectionId": connection_id, "Data": b"{}"})


def test_a_delivered_message_is_sent(client: Any) -> None:
    with Stubber(client) as stubber:
        _ok(stubber)
        assert _broadcaster(client).send("c1", b"{}") is DeliveryStatus.SENT
        stubber.assert_no_pending_responses()


def test_gone_is_reported_at_once_without_retrying(client: Any) -> None:
    with Stubber(client) as stubber:
        _error(stubber, "GoneException", 410)
        assert _broadcaster(client).send("c1", b"{}") is DeliveryStatus.GONE
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(("code", "status"), [("LimitExceededException", 429), ("InternalServerError", 500)])
def test_throttling_and_server_errors_are_retried_then_delivered(client: Any, code: str, status: int) -> None:
    with Stubber(client) as stubber:
        _error(stubber, code, status)
        _error(stubber, code, status)
        _ok(stubber)
        assert _broadcaster(client, max_attempts=3).send("c1", b"{}") is DeliveryStatus.SENT
        stubber.assert_no_pending_responses()


def test_still_throttled_after_the_last_attempt_is_failed(client: Any) -> None:
    with Stubber(client) as stubber:
        for _ in range(3):
            _error(stubber, "LimitExceededException", 429)
        assert _broadcaster(client, max_attempts=3).send("c1", b"{}") is DeliveryStatus.FAILED
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(("code", "status"), [("ForbiddenException", 403), ("PayloadTooLargeException", 413)])
def test_refusals_that_cannot_change_fail_without_retrying(client: Any, code: str, status: int) -> None:
    with Stubber(client) as stubber:
        _error(stubber, code, status)
        assert _broadcaster(client, max_attempts=3).send("c1", b"{}") is DeliveryStatus.FAILED
        stubber.assert_no_pending_responses()


def test_send_many_keeps_the_order_of_the_deliveries(client: Any) -> None:
    # The Stubber answers in call order, so one worker keeps the answers aligned with the deliveries.
    with Stubber(client) as stubber:
        _ok(stubber, "a")
        _error(stubber, "GoneException", 410)
        _ok(stubber, "c")
        statuses = _broadcaster(client, concurrency=1).send_many([("a", b"{}"), ("b", b"{}"), ("c", b"{}")])
    assert statuses == [DeliveryStatus.SENT, DeliveryStatus.GONE, DeliveryStatus.SENT]


def test_close_deletes_the_connection_through_the_management_api(client: Any) -> None:
    with Stubber(client) as stubber:
        stubber.add_client_error("delete_connection", service_error_code="LimitExceededException", http_status_code=429)
        stubber.add_response("delete_connection", {}, {"ConnectionId": "c1"})
        assert _broadcaster(client).close("c1") is DeliveryStatus.SENT
        stubber.add_client_error("delete_connection", service_error_code="GoneException", http_status_code=410)
        assert _broadcaster(client).close("c1") is DeliveryStatus.GONE
        stubber.assert_no_pending_responses()
