"""Local API Gateway (REST proxy integration) over real sockets, on one aiohttp server.

Every HTTP request is matched against the Chalice route templates, turned into the version 1.0 proxy
event API Gateway sends, and handed to a Lambda worker (infra.local.lambda_runtime); the result is
turned back into an HTTP response with API Gateway's own answers for its own failures (404 for no
route, 413, 502, 504). The event loop only moves bytes: it never runs a handler.

The WebSocket API (the spec's /api/v1/market/ws/* paths) and its management API
(POST/GET/DELETE /@connections/{id}) share this server and port (infra.local.websocket): `build_app`
takes route registrars that are applied before the REST catch-all, and a registrar's handler can
hand a request it does not take to `handle_rest`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

from infra.local.lambda_runtime import ACCOUNT_ID, LambdaTimeout, Route, RouteTable

logger = logging.getLogger(__name__)

API_ID = "local"
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's request payload limit
INTEGRATION_TIMEOUT_SECONDS = 29.0  # API Gateway REST's maximum integration timeout
# Hop-by-hop and framing headers: aiohttp computes its own (API Gateway remaps these too).
_DROPPED_RESPONSE_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


class Invoker(Protocol):
    """What the gateway invokes: infra.local.lambda_runtime.LambdaPool, or a fake in tests."""

    async def invoke(self, event: dict[str, Any], *, handler: str | None = None) -> dict[str, Any]:
        """Invoke `handler` (an app module attribute; None: the Chalice app, i.e. the REST API)."""
        ...


class MalformedProxyResponse(Exception):
    """The function's result is not a valid proxy response (API Gateway answers 502)."""


@dataclass(frozen=True)
class IncomingRequest:
    """The parts of an HTTP request the proxy event is built from."""

    method: str
    raw_path: str  # as sent, percent-encoded, without the query string
    headers: Sequence[tuple[str, str]]
    query: Sequence[tuple[str, str]]  # decoded, in order, repeats kept
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


# --- Pure parts: route matching, event building, result conversion. ---


def match_route(routes: Iterable[Route], raw_path: str) -> RouteMatch | None:
    """The route whose template matches the path, preferring literal segments over `{variables}`.

    A `{name}` segment matches one non-empty path segment and captures it URL-decoded, so `%2F` in a
    symbol arrives as `/` in the parameter instead of splitting the path (as on API Gateway).
    """
    segments = _split(raw_path)
    best: tuple[tuple[bool, ...], RouteMatch] | None = None
    for route in routes:
        template = _split(route.template)
        if len(template) != len(segments):
            continue
        parameters: dict[str, str] = {}
        rank: list[bool] = []  # True where a variable matched; lower ranks are more specific
        for part, raw in zip(template, segments, strict=True):
            value = unquote(raw)
            if part.startswith("{") and part.endswith("}"):
                if not value:
                    break
                parameters[part[1:-1]] = value
                rank.append(True)
            elif part == value:
                rank.append(False)
            else:
                break
        else:
            if best is None or tuple(rank) < best[0]:
                best = (tuple(rank), RouteMatch(route, parameters))
    return None if best is None else best[1]


def build_proxy_event(
    request: IncomingRequest,
    match: RouteMatch,
    *,
    stage: str,
    request_id: str,
    received_at: float,
    binary_types: Sequence[str] = (),
) -> dict[str, Any]:
    """The API Gateway REST proxy event (payload version 1.0) for a matched request."""
    headers, multi_headers = _single_and_multi(request.headers)
    query, multi_query = _single_and_multi(request.query)
    body, is_base64 = _event_body(request.body, _header(request.headers, "content-type"), binary_types)
    path = unquote(request.raw_path)
    host = _header(request.headers, "host")
    return {
        "resource": match.route.template,
        "path": path,
        "httpMethod": request.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": match.path_parameters or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": API_ID,
            "resourcePath": match.route.template,  # Chalice dispatches on this
            "httpMethod": request.method,
            "extendedRequestId": request_id,
            "requestTime": datetime.fromtimestamp(received_at, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
            # On the execute-api domain API Gateway prefixes the stage; it does the same here.
            "path": f"/{stage}{path}",
            "accountId": ACCOUNT_ID,
            "protocol": request.protocol,
            "stage": stage,
            "domainPrefix": (host or "").split(".")[0],
            "requestTimeEpoch": int(received_at * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": _header(request.headers, "user-agent"),
                "user": None,
            },
            "domainName": host,
            "apiId": API_ID,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def proxy_response_parts(result: object) -> tuple[int, list[tuple[str, str]], bytes]:
    """Status, headers and body of a proxy integration result; MalformedProxyResponse if invalid."""
    if not isinstance(result, dict):
        raise MalformedProxyResponse(f"result is a {type(result).__name__}, not an object")
    status = result.get("statusCode")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise MalformedProxyResponse(f"statusCode {status!r} is not an HTTP status")
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise MalformedProxyResponse(f"body is a {type(body).__name__}, not a string")
    single = _object(result, "headers")
    multi = _object(result, "multiValueHeaders")
    # As API Gateway does: multiValueHeaders win where a name appears in both.
    pairs: list[tuple[str, str]] = []
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedProxyResponse(f"multiValueHeaders[{name!r}] is not a list")
        pairs.extend((name, str(value)) for value in values)
    in_multi = {name.lower() for name in multi}
    pairs.extend((name, str(value)) for name, value in single.items() if name.lower() not in in_multi)
    pairs = [(name, value) for name, value in pairs if name.lower() not in _DROPPED_RESPONSE_HEADERS]
    if not any(name.lower() == "content-type" for name, _ in pairs):
        pairs.append(("Content-Type", "application/json"))  # API Gateway's default for proxy results
    if body is None:
        return status, pairs, b""
    if result.get("isBase64Encoded"):
        try:
            return status, pairs, base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise MalformedProxyResponse("isBase64Encoded is true but body is not base64") from exc
    return status, pairs, body.encode()


# The headers MissingRouteGatewayResponse adds on AWS (its ResponseParameters).
NO_ROUTE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def no_route_message(method: str, path: str) -> str:
    """The 404 message for an undeclared method or path; infra/template.yaml's MissingRouteGatewayResponse
    renders the same from $context.httpMethod and $context.path on AWS."""
    return f"no route for {method} {path}"


def error_body(code: str, message: str, request_id: str) -> dict[str, Any]:
    """The service's standard error body (chalicelib.models.errors.ErrorBody's shape)."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


def _split(path: str) -> list[str]:
    stripped = path.strip("/")
    return stripped.split("/") if stripped else []


def _single_and_multi(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    # API Gateway sends both views: the last value of each name, and all values. Empty → null.
    if not pairs:
        return None, None
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _header(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    values = [value for key, value in headers if key.lower() == name]
    return values[-1] if values else None


def _event_body(body: bytes, content_type: str | None, binary_types: Sequence[str]) -> tuple[str | None, bool]:
    if not body:
        return None, False
    if not _is_binary(content_type, binary_types):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass  # not text whatever the header says: pass it intact rather than mangled
    return base64.b64encode(body).decode("ascii"), True


def _is_binary(content_type: str | None, binary_types: Sequence[str]) -> bool:
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    for pattern in binary_types:
        pattern = pattern.lower()
        if pattern in (media_type, "*/*") or (pattern.endswith("/*") and media_type.startswith(pattern[:-1])):
            return True
    return False


def _object(result: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = result.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedProxyResponse(f"{key} is not an object")
    return value


# --- The aiohttp application. ---


@dataclass(frozen=True)
class GatewayConfig:
    table: RouteTable
    invoker: Invoker
    stage: str = "local"
    integration_timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS


GATEWAY_CONFIG = web.AppKey("gateway_config", GatewayConfig)

RouteRegistrar = Callable[[web.Application], None]


def build_app(
    table: RouteTable,
    invoker: Invoker,
    *,
    stage: str = "local",
    integration_timeout_seconds: float = INTEGRATION_TIMEOUT_SECONDS,
    registrars: Sequence[RouteRegistrar] = (),
) -> web.Application:
    """The gateway application. `registrars` add routes served before the REST catch-all (the
    WebSocket API and the @connections management API); they can read GATEWAY_CONFIG from the app."""
    app = web.Application(client_max_size=MAX_PAYLOAD_BYTES)
    app[GATEWAY_CONFIG] = GatewayConfig(table, invoker, stage, integration_timeout_seconds)
    for register in registrars:
        register(app)
    # Registered last: aiohttp resolves routes in registration order, and this one matches everything
    # (`[\s\S]`, not `.`: a decoded path may hold a newline, %0A, and must still get our JSON answer).
    app.router.add_route("*", r"/{path:[\s\S]*}", handle_rest)
    return app


async def handle_rest(request: web.Request) -> web.StreamResponse:
    config = request.app[GATEWAY_CONFIG]
    request_id = str(uuid.uuid4())
    received_at = time.time()
    if request.content_length is not None and request.content_length > MAX_PAYLOAD_BYTES:
        return _too_large(request_id)
    match = match_route(config.table.routes, request.rel_url.raw_path)
    if match is None or request.method not in match.route.methods:
        if match is not None and request.method == "OPTIONS" and match.route.preflight_headers is not None:
            return web.Response(status=200, headers={**match.route.preflight_headers, "x-amzn-RequestId": request_id})
        # A method or resource API Gateway does not know gets its MISSING_AUTHENTICATION_TOKEN response,
        # which infra/template.yaml (MissingRouteGatewayResponse) sets to this same 404 and body.
        message = no_route_message(request.method, request.path)
        response = _gateway_response(404, error_body("not_found", message, request_id), request_id)
        response.headers.update(NO_ROUTE_HEADERS)
        return response
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # a chunked body with no Content-Length
        return _too_large(request_id)
    incoming = IncomingRequest(
        method=request.method,
        raw_path=request.rel_url.raw_path,
        headers=list(request.headers.items()),
        query=list(request.rel_url.query.items()),
        body=body,
        source_ip=request.remote or "127.0.0.1",
        protocol=f"HTTP/{request.version.major}.{request.version.minor}",
    )
    event = build_proxy_event(
        incoming,
        match,
        stage=config.stage,
        request_id=request_id,
        received_at=received_at,
        binary_types=config.table.binary_types,
    )
    return await _invoke(config, event, request_id, f"{request.method} {request.path}")


async def _invoke(config: GatewayConfig, event: dict[str, Any], request_id: str, label: str) -> web.Response:
    deadline = asyncio.timeout(config.integration_timeout_seconds)
    try:
        async with deadline:
            result = await config.invoker.invoke(event)
        status, headers, payload = proxy_response_parts(result)
    except LambdaTimeout as exc:
        logger.error("%s: %s (request %s)", label, exc, request_id)  # a timeout has no traceback worth showing
        return _gateway_response(502, {"message": "Internal server error"}, request_id)
    except Exception:
        # TimeoutError is also what a handler's socket timeout raises: only our own deadline is a 504.
        if deadline.expired():
            logger.warning("%s: integration timed out (request %s)", label, request_id)
            return _gateway_response(504, {"message": "Endpoint request timed out"}, request_id)
        logger.exception("%s: Lambda invocation failed (request %s)", label, request_id)
        return _gateway_response(502, {"message": "Internal server error"}, request_id)
    return web.Response(status=status, headers=_response_headers(headers, request_id), body=payload)


def _response_headers(pairs: Iterable[tuple[str, str]], request_id: str) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict(pairs)
    headers["x-amzn-RequestId"] = request_id
    return headers


def _too_large(request_id: str) -> web.Response:
    response = _gateway_response(413, {"message": "Request Too Long"}, request_id)
    # The unread body is still on the wire, so the connection cannot serve another request.
    response.force_close()
    return response


def _gateway_response(status: int, body: dict[str, Any], request_id: str) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers={"x-amzn-RequestId": request_id},
    )


# --- Running it. ---


@contextlib.asynccontextmanager
async def serve(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5.0
) -> AsyncIterator[web.AppRunner]:
    """Listen on host:port (0 picks a free port; see `bound_port`) until the block exits, then give
    in-flight requests up to shutdown_timeout seconds."""
    runner = web.AppRunner(app, shutdown_timeout=shutdown_timeout, access_log_format='%a "%r" %s %b %Tfs')
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield runner
    finally:
        await runner.cleanup()


def bound_port(runner: web.AppRunner) -> int:
    return int(runner.addresses[0][1])


class GatewayThread:
    """The gateway on its own event loop in a background thread (tests, embedding)."""

    def __init__(
        self, app: web.Application, host: str = "127.0.0.1", port: int = 0, *, shutdown_timeout: float = 5.0
    ) -> None:
        self._app = app
        self._shutdown_timeout = shutdown_timeout
        self.host = host
        self.port = port
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="local-gateway", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> GatewayThread:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> GatewayThread:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start(); nothing else is waiting on this thread
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(self._app, self.host, self.port, shutdown_timeout=self._shutdown_timeout) as runner:
            self.port = bound_port(runner)
            self._ready.set()
            await self._stop.wait()
