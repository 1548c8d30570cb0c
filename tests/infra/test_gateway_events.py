"""The local gateway's pure parts: route matching, the REST proxy event, and the result → response."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from infra.local.gateway import (
    GatewayThread,
    IncomingRequest,
    MalformedProxyResponse,
    RouteMatch,
    build_app,
    build_proxy_event,
    match_route,
    proxy_response_parts,
)
from infra.local.lambda_runtime import LambdaTimeout, Route, RouteTable

ROUTES = (
    Route("/api/v1/market/quote/{symbol}", frozenset({"GET"})),
    Route("/api/v1/market/quote/batch", frozenset({"POST"})),
    Route("/api/v1/market/historical/{symbol}", frozenset({"GET"})),
    Route("/api/v1/market/{kind}/{symbol}", frozenset({"GET"})),
    Route("/", frozenset({"GET"})),
)


def _request(
    raw_path: str = "/api/v1/market/quote/AAPL",
    *,
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    query: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> IncomingRequest:
    return IncomingRequest(
        method=method,
        raw_path=raw_path,
        headers=headers if headers is not None else [("Host", "127.0.0.1:8000"), ("User-Agent", "pytest")],
        query=query or [],
        body=body,
        source_ip="127.0.0.7",
    )


def _event(request: IncomingRequest, binary_types: tuple[str, ...] = ()) -> dict[str, object]:
    match = match_route(ROUTES, request.raw_path)
    assert match is not None
    return build_proxy_event(
        request, match, stage="local", request_id="req-1", received_at=1_700_000_000.5, binary_types=binary_types
    )


class TestMatchRoute:
    def test_variable_segment_captures_the_url_decoded_value(self) -> None:
        match = match_route(ROUTES, "/api/v1/market/quote/BRK%2DB")
        assert match == RouteMatch(ROUTES[0], {"symbol": "BRK-B"})

    def test_encoded_slash_stays_inside_one_parameter(self) -> None:
        match = match_route(ROUTES, "/api/v1/market/quote/..%2Fetc")
        assert match is not None
        assert match.route.template == "/api/v1/market/quote/{symbol}"
        assert match.path_parameters == {"symbol": "../etc"}

    def test_literal_segment_wins_over_a_variable_one(self) -> None:
        match = match_route(ROUTES, "/api/v1/market/quote/batch")
        assert match is not None
        assert match.route.template == "/api/v1/market/quote/batch"
        assert match.path_parameters == {}

    def test_earlier_literal_segment_decides_between_two_variable_templates(self) -> None:
        # Both /historical/{symbol} and /{kind}/{symbol} match; the literal comes first in the path.
        match = match_route(ROUTES, "/api/v1/market/historical/MSFT")
        assert match is not None
        assert match.route.template == "/api/v1/market/historical/{symbol}"
        generic = match_route(ROUTES, "/api/v1/market/profile/MSFT")
        assert generic == RouteMatch(ROUTES[3], {"kind": "profile", "symbol": "MSFT"})

    @pytest.mark.parametrize(
        "path",
        ["/x", "/api/v1/market/quote", "/api/v1/market/quote/", "/api/v1/market/quote/AAPL/extra", "/api/v2/x/y/z"],
    )
    def test_unknown_paths_do_not_match(self, path: str) -> None:
        assert match_route(ROUTES, path) is None

    def test_root_route(self) -> None:
        assert match_route(ROUTES, "/") == RouteMatch(ROUTES[4], {})


class TestBuildProxyEvent:
    def test_shape_of_a_simple_get(self) -> None:
        event = _event(_request())
        assert event["resource"] == "/api/v1/market/quote/{symbol}"
        assert event["path"] == "/api/v1/market/quote/AAPL"
        assert event["httpMethod"] == "GET"
        assert event["pathParameters"] == {"symbol": "AAPL"}
        assert event["stageVariables"] is None
        assert event["body"] is None
        assert event["isBase64Encoded"] is False
        context = event["requestContext"]
        assert isinstance(context, dict)
        assert context["resourcePath"] == "/api/v1/market/quote/{symbol}"
        assert context["httpMethod"] == "GET"
        assert context["path"] == "/local/api/v1/market/quote/AAPL"
        assert context["stage"] == "local"
        assert context["requestId"] == "req-1"
        assert context["requestTimeEpoch"] == 1_700_000_000_500
        assert context["requestTime"] == "14/Nov/2023:22:13:20 +0000"
        assert context["accountId"] == "123456789012"
        assert context["apiId"] == "local"
        assert context["protocol"] == "HTTP/1.1"
        assert context["domainName"] == "127.0.0.1:8000"
        assert context["identity"]["sourceIp"] == "127.0.0.7"
        assert context["identity"]["userAgent"] == "pytest"

    def test_no_query_string_gives_null_parameters(self) -> None:
        event = _event(_request())
        assert event["queryStringParameters"] is None
        assert event["multiValueQueryStringParameters"] is None

    def test_repeated_query_parameters_keep_every_value_and_the_last_wins_the_single_view(self) -> None:
        event = _event(_request(query=[("symbols", "AAPL"), ("symbols", "MSFT"), ("period", "1y"), ("flag", "")]))
        assert event["queryStringParameters"] == {"symbols": "MSFT", "period": "1y", "flag": ""}
        assert event["multiValueQueryStringParameters"] == {"symbols": ["AAPL", "MSFT"], "period": ["1y"], "flag": [""]}

    def test_headers_single_and_multi_value(self) -> None:
        headers = [("Host", "h"), ("Accept", "text/plain"), ("Accept", "application/json")]
        event = _event(_request(headers=headers))
        assert event["headers"] == {"Host": "h", "Accept": "application/json"}
        assert event["multiValueHeaders"] == {"Host": ["h"], "Accept": ["text/plain", "application/json"]}

    def test_path_parameters_are_url_decoded_and_path_is_decoded(self) -> None:
        event = _event(_request("/api/v1/market/quote/%5EGSPC"))
        assert event["pathParameters"] == {"symbol": "^GSPC"}
        assert event["path"] == "/api/v1/market/quote/^GSPC"

    def test_no_path_parameters_gives_null(self) -> None:
        assert _event(_request("/api/v1/market/quote/batch", method="POST"))["pathParameters"] is None

    def test_utf8_body_is_passed_as_text(self) -> None:
        body = '{"symbols": ["AAPL", "€"]}'.encode()
        event = _event(_request("/api/v1/market/quote/batch", method="POST", body=body))
        assert event["body"] == '{"symbols": ["AAPL", "€"]}'
        assert event["isBase64Encoded"] is False

    def test_non_utf8_body_is_base64(self) -> None:
        body = b"\xff\xfe\x00binary"
        event = _event(_request("/api/v1/market/quote/batch", method="POST", body=body))
        assert event["isBase64Encoded"] is True
        assert isinstance(event["body"], str)
        assert base64.b64decode(event["body"]) == body

    def test_binary_media_type_is_base64_even_when_it_decodes_as_text(self) -> None:
        headers = [("Host", "h"), ("Content-Type", "application/octet-stream")]
        request = _request("/api/v1/market/quote/batch", method="POST", headers=headers, body=b"abc")
        event = _event(request, binary_types=("application/octet-stream",))
        assert event["body"] == "YWJj"
        assert event["isBase64Encoded"] is True


class TestProxyResponseParts:
    def test_headers_merge_with_multi_value_headers_winning(self) -> None:
        status, headers, body = proxy_response_parts(
            {
                "statusCode": 201,
                "headers": {"Content-Type": "text/plain", "Set-Cookie": "ignored=1", "Content-Length": "99"},
                "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
                "body": "hello",
            }
        )
        assert status == 201
        assert headers == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Type", "text/plain")]
        assert body == b"hello"

    def test_defaults_to_json_content_type_and_empty_body(self) -> None:
        assert proxy_response_parts({"statusCode": 204}) == (204, [("Content-Type", "application/json")], b"")

    def test_base64_body_is_decoded(self) -> None:
        result = {"statusCode": 200, "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
        assert proxy_response_parts(result)[2] == b"\x00\x01"

    @pytest.mark.parametrize(
        "result",
        [
            None,
            "200",
            {"body": "no status"},
            {"statusCode": "200"},
            {"statusCode": True},
            {"statusCode": 200, "body": {"not": "a string"}},
            {"statusCode": 200, "headers": ["x"]},
            {"statusCode": 200, "multiValueHeaders": {"x": "not a list"}},
            {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
        ],
    )
    def test_malformed_results_are_rejected(self, result: object) -> None:
        with pytest.raises(MalformedProxyResponse):
            proxy_response_parts(result)


class FakeFunction:
    """Stands in for the Lambda pool: answers by path, and records the events it was given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def invoke(self, event: dict[str, Any], *, handler: str | None = None) -> dict[str, Any]:
        assert handler is None  # the REST API is the Chalice app itself
        self.events.append(event)
        symbol = (event["pathParameters"] or {}).get("symbol")
        if symbol == "CRASH":
            raise RuntimeError("handler blew up")
        if symbol == "SLOW":
            await asyncio.sleep(5)
        if symbol == "TIMEOUT":
            raise LambdaTimeout("Task timed out after 0.10 seconds")
        if symbol == "BAD":
            return {"statusCode": 200, "body": {"not": "a string"}}
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": f'{{"symbol": "{symbol}"}}'}


@pytest.fixture
def function() -> FakeFunction:
    return FakeFunction()


@pytest.fixture
def gateway_url(function: FakeFunction) -> Iterator[str]:
    table = RouteTable(ROUTES)
    app = build_app(table, function, integration_timeout_seconds=0.5)
    # A short shutdown: aiohttp may linger on the unread body of the 413 test until this runs out.
    with GatewayThread(app, shutdown_timeout=0.5) as gateway:
        yield gateway.url


class TestGatewayOverHttp:
    def test_proxies_to_the_function_and_returns_its_response(self, gateway_url: str, function: FakeFunction) -> None:
        response = requests.get(f"{gateway_url}/api/v1/market/quote/AAPL?x=1&x=2", timeout=5)
        assert response.status_code == 200
        assert response.json() == {"symbol": "AAPL"}
        assert response.headers["x-amzn-RequestId"] == function.events[0]["requestContext"]["requestId"]
        assert function.events[0]["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
        assert function.events[0]["requestContext"]["identity"]["sourceIp"] == "127.0.0.1"

    def test_unknown_route_is_the_standard_404_body(self, gateway_url: str, function: FakeFunction) -> None:
        response = requests.get(f"{gateway_url}/x", timeout=5)
        assert response.status_code == 404
        assert response.headers["Content-Type"].startswith("application/json")
        error = response.json()["error"]
        assert error["code"] == "not_found"
        assert error["message"] == "no route for GET /x"
        assert error["request_id"] == response.headers["x-amzn-RequestId"]
        assert function.events == []

    def test_method_not_defined_on_the_resource_is_404(self, gateway_url: str) -> None:
        response = requests.delete(f"{gateway_url}/api/v1/market/quote/AAPL", timeout=5)
        assert response.status_code == 404
        assert response.json()["error"]["message"] == "no route for DELETE /api/v1/market/quote/AAPL"

    @pytest.mark.parametrize("symbol", ["CRASH", "BAD", "TIMEOUT"])
    def test_function_failure_is_502(self, gateway_url: str, symbol: str) -> None:
        response = requests.get(f"{gateway_url}/api/v1/market/quote/{symbol}", timeout=5)
        assert response.status_code == 502
        assert response.json() == {"message": "Internal server error"}

    def test_integration_timeout_is_504(self, gateway_url: str) -> None:
        response = requests.get(f"{gateway_url}/api/v1/market/quote/SLOW", timeout=5)
        assert response.status_code == 504
        assert response.json() == {"message": "Endpoint request timed out"}

    def test_body_over_10_mb_is_413(self, gateway_url: str, function: FakeFunction) -> None:
        body = b"x" * (10 * 1024 * 1024 + 1)
        response = requests.post(f"{gateway_url}/api/v1/market/quote/batch", data=body, timeout=10)
        assert response.status_code == 413
        assert function.events == []
