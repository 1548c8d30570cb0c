"""Local API Gateway WebSocket API and its management API, on the REST gateway's server and port.

What `chalice local` lacks and moto gets wrong, emulated over real sockets:

* Upgrades on /api/v1/market/ws/market-data, /api/v1/market/ws/stock-quotes and / (the API Gateway URL
  form). Only real upgrade requests (GET with `Upgrade: websocket`) are taken; anything else on those
  paths goes to the REST handler as before.
* $connect runs before the handshake completes: a non-2xx statusCode refuses the upgrade with that
  status and a JSON body (a failed invocation or function timeout: 502, the 29 s integration timeout:
  504, as the REST side answers), and no socket is opened. As on AWS, a subprotocol the client asks
  for is only selected when the $connect result's headers name it in `Sec-WebSocket-Protocol`;
  otherwise the handshake selects none (and browsers give up).
* $default gets every data message: text as `body`, binary base64-encoded with isBase64Encoded true.
  Invocations for one connection may run concurrently, as on AWS; a failed one is logged, the client
  gets API Gateway's `{"message": "Internal server error", "connectionId", "requestId"}` frame, and the
  connection stays open. The result is not sent back (no route response, as Chalice deploys it).
* $disconnect fires exactly once per connection, whatever closed it, after the connection has been
  unregistered (a post_to_connection from the handler gets 410, as on AWS).
* The management API, at the paths boto3's `apigatewaymanagementapi` client uses with
  `endpoint_url=<gateway URL>` (and `<gateway URL>/<stage>`, what Chalice's configure(domain, stage)
  produces): POST/GET/DELETE /@connections/{id}. Signatures are not checked. Unknown or closed ids:
  410 GoneException; POST data over max_message_bytes: 413 PayloadTooLargeException. Sends to one socket
  are serialised by a per-connection lock.

Connection ids look like API Gateway's ("L0SM9cOFvHcCIhw="): standard base64 of 11 random bytes (16
characters, the last one '='). Ids containing '+' or '/' are drawn again, so an id is the same in the
standard and URL-safe alphabets and only '=' needs percent-encoding in a path (%3D, decoded here).

Limits (WebSocketLimits; the defaults are API Gateway's quotas), exactly what is enforced:

* idle_timeout_seconds (600): no frame of any kind (data, ping, pong) received from the client for that
  long → the server closes with 1001 "Going away". Frames the server sends do not count.
* max_connection_seconds (7200): the connection's age → the server closes with 1001 "Going away".
* max_message_bytes (128 KB): a client message (the payload of all its frames) above it → close with
  1009, rejected by aiohttp's reader from the frame header, before the payload is buffered. Also the
  limit for POST @connections data (413).
* max_frame_bytes (32 KB) is NOT enforced: aiohttp assembles fragmented messages inside its reader and
  exposes no per-frame hook, so frames cannot be told apart without reimplementing its parser. A client
  sending a 40 KB message in one frame (as browsers always do) is served locally; API Gateway would
  close the connection with 1009. Keep messages under 32 KB, or fragment them, to behave the same on AWS.
* permessage-deflate is not negotiated (API Gateway does not support it).

disconnectStatusCode / disconnectReason: the client's close code and reason when it sent a close frame
(1005 "Client-side close frame status not set" without a code), 1006 when the TCP connection dropped
without one, otherwise the code the server closed with: 1001 idle timeout, max age and server shutdown,
1000 DELETE @connections, 1009 oversize message. On app shutdown (runner cleanup) every socket is closed
with 1001 and $disconnect fires for each, with a bounded wait.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from aiohttp import WSCloseCode, WSMsgType, web

from infra.local.gateway import API_ID, GATEWAY_CONFIG, GatewayConfig, RouteRegistrar, handle_rest
from infra.local.lambda_runtime import LambdaTimeout

logger = logging.getLogger(__name__)

WEBSOCKET_PATHS = ("/api/v1/market/ws/market-data", "/api/v1/market/ws/stock-quotes", "/")
CONNECT, DEFAULT, DISCONNECT = "$connect", "$default", "$disconnect"
SHUTDOWN_GRACE_SECONDS = 5.0  # how long app shutdown waits for the sockets' close and $disconnect
_CLOSE_HANDSHAKE_SECONDS = 2.0  # how long a server-side close waits for the client's close frame

# disconnectReason texts, as API Gateway words them where known.
REASON_GOING_AWAY = "Going away"
REASON_NO_STATUS = "Client-side close frame status not set"
REASON_ABNORMAL = "Connection was closed abnormally"
# API Gateway meters WebSocket messages in 32 KB steps.
BILLING_STEP_BYTES = 32 * 1024
USAGE_PATH = "/_local/management-usage"
REASON_DELETED = "Connection deleted through the @connections API"
REASON_TOO_BIG = "Message too big"


@dataclass(frozen=True)
class WebSocketLimits:
    """API Gateway's WebSocket quotas (the defaults); see the module docstring for what is enforced."""

    idle_timeout_seconds: float = 600.0
    max_connection_seconds: float = 7200.0
    max_frame_bytes: int = 32 * 1024  # documented, not enforced
    max_message_bytes: int = 128 * 1024


# --- Pure parts: ids and events. ---


def new_connection_id() -> str:
    """An id shaped like API Gateway's: base64 of 11 random bytes, never containing '+' or '/'."""
    while True:
        candidate = base64.b64encode(secrets.token_bytes(11)).decode("ascii")
        if "+" not in candidate and "/" not in candidate:
            return candidate


@dataclass(frozen=True)
class ConnectionContext:
    """What every event of one connection repeats in its requestContext."""

    connection_id: str
    connected_at: float  # epoch seconds
    source_ip: str
    user_agent: str | None
    domain_name: str | None  # the Host header, e.g. "127.0.0.1:8000"
    stage: str
    api_id: str = API_ID


def connect_event(
    context: ConnectionContext,
    headers: Sequence[tuple[str, str]],
    query: Sequence[tuple[str, str]],
    *,
    request_id: str,
    received_at: float,
) -> dict[str, Any]:
    """The $connect event: the handshake's headers and query string (absent when there is none)."""
    event: dict[str, Any] = {}
    event["headers"], event["multiValueHeaders"] = _single_and_multi(headers)
    if query:
        event["queryStringParameters"], event["multiValueQueryStringParameters"] = _single_and_multi(query)
    event["requestContext"] = _request_context(context, CONNECT, "CONNECT", request_id, received_at)
    event["isBase64Encoded"] = False
    return event


def message_event(
    context: ConnectionContext, data: str | bytes, *, request_id: str, message_id: str, received_at: float
) -> dict[str, Any]:
    """The $default event for one data message: text as is, binary base64-encoded."""
    request_context = _request_context(context, DEFAULT, "MESSAGE", request_id, received_at)
    request_context["messageId"] = message_id
    if isinstance(data, str):
        body, is_base64 = data, False
    else:
        body, is_base64 = base64.b64encode(data).decode("ascii"), True
    return {"requestContext": request_context, "body": body, "isBase64Encoded": is_base64}


def disconnect_event(
    context: ConnectionContext, status_code: int, reason: str, *, request_id: str, received_at: float
) -> dict[str, Any]:
    """The $disconnect event, with API Gateway's (nearly empty) headers."""
    headers = {"Host": context.domain_name or "", "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    request_context = _request_context(context, DISCONNECT, "DISCONNECT", request_id, received_at)
    request_context["disconnectStatusCode"] = status_code
    request_context["disconnectReason"] = reason
    return {
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "requestContext": request_context,
        "isBase64Encoded": False,
    }


def connection_info(context: ConnectionContext, last_active_at: float) -> dict[str, Any]:
    """GET @connections/{id}'s body, as on the wire (boto3 maps it onto ConnectedAt, Identity.SourceIp...)."""
    return {
        "connectedAt": _iso8601(context.connected_at),
        "identity": {"sourceIp": context.source_ip, "userAgent": context.user_agent},
        "lastActiveAt": _iso8601(last_active_at),
    }


def status_code_of(result: object) -> int | None:
    """The statusCode of a handler's result, None when there is no valid one."""
    if not isinstance(result, dict):
        return None
    status = result.get("statusCode")
    if isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599:
        return status
    return None


def selected_subprotocol(result: Mapping[str, Any]) -> str | None:
    """The Sec-WebSocket-Protocol a $connect result selects (headers or multiValueHeaders)."""
    for key in ("headers", "multiValueHeaders"):
        headers = result.get(key)
        if not isinstance(headers, dict):
            continue
        for name, value in headers.items():
            if name.lower() == "sec-websocket-protocol":
                chosen = value[0] if isinstance(value, list) and value else value
                return str(chosen).split(",")[0].strip() or None
    return None


def _request_context(
    context: ConnectionContext, route_key: str, event_type: str, request_id: str, received_at: float
) -> dict[str, Any]:
    identity: dict[str, str] = {"sourceIp": context.source_ip}
    if context.user_agent is not None:
        identity["userAgent"] = context.user_agent
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": datetime.fromtimestamp(received_at, UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "messageDirection": "IN",
        "stage": context.stage,
        "connectedAt": int(context.connected_at * 1000),
        "requestTimeEpoch": int(received_at * 1000),
        "identity": identity,
        "requestId": request_id,
        "domainName": context.domain_name,
        "connectionId": context.connection_id,
        "apiId": context.api_id,
    }


def _single_and_multi(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        single[name] = value
        multi.setdefault(name, []).append(value)
    return single, multi


def _iso8601(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- Connections. ---


class Gone(Exception):
    """The connection is unknown, closing or closed (the management API's 410 GoneException)."""


@dataclass(eq=False)
class Connection:
    """One open WebSocket and what the management API reports about it."""

    context: ConnectionContext
    socket: web.WebSocketResponse
    last_active_at: float  # epoch seconds: the last frame received or message posted
    last_received: float  # event loop time of the last frame received (the idle timeout's clock)
    opened: float  # event loop time of the upgrade (the max age's clock)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Set when the server closes the connection (code, reason): what $disconnect reports.
    server_close: tuple[int, str] | None = None
    close_task: asyncio.Task[bool] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)  # set once $disconnect has run

    @property
    def connection_id(self) -> str:
        return self.context.connection_id

    @property
    def closing(self) -> bool:
        return self.close_task is not None or self.socket.closed

    def close(self, code: int, reason: str) -> asyncio.Task[bool]:
        """Start the server-side close (once; later calls return the same task)."""
        if self.close_task is None:
            self.server_close = (code, reason)
            self.close_task = asyncio.ensure_future(self.socket.close(code=code, message=reason.encode()))
        return self.close_task

    async def send(self, data: bytes) -> None:
        """Send one frame: text when data is UTF-8, else binary. Gone if the socket is closing."""
        async with self.send_lock:  # aiohttp must not write two frames to one socket concurrently
            if self.closing:
                raise Gone(self.connection_id)
            try:
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    await self.socket.send_bytes(data)
                else:
                    await self.socket.send_str(text)
            except (ConnectionError, RuntimeError) as exc:  # the transport went away under us
                raise Gone(self.connection_id) from exc
        self.last_active_at = time.time()


class ConnectionRegistry:
    """The open connections by id: what the management API and the tests see."""

    def __init__(self) -> None:
        self._connections: dict[str, Connection] = {}

    def register(self, connection: Connection) -> None:
        self._connections[connection.connection_id] = connection

    def unregister(self, connection_id: str) -> Connection | None:
        return self._connections.pop(connection_id, None)

    def get(self, connection_id: str) -> Connection | None:
        return self._connections.get(connection_id)

    def ids(self) -> list[str]:
        return list(self._connections)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._connections

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._connections.values()))


# --- The aiohttp side. ---


@dataclass
class ManagementUsage:
    """What API Gateway would count and bill for the management API: every POST @connections call counts
    against the account's request rate, and a message is billed per started 32 KB."""

    posts: int = 0
    bytes_posted: int = 0
    billed_messages: int = 0

    def record_post(self, size: int) -> None:
        self.posts += 1
        self.bytes_posted += size
        self.billed_messages += max(1, -(-size // BILLING_STEP_BYTES))

    def as_dict(self) -> dict[str, int]:
        return {"posts": self.posts, "bytes_posted": self.bytes_posted, "billed_messages": self.billed_messages}


class WebSocketApi:
    """The WebSocket routes and the @connections management API of one gateway app."""

    def __init__(self, handlers: Mapping[str, str], limits: WebSocketLimits) -> None:
        self.handlers = dict(handlers)
        self.limits = limits
        self.registry = ConnectionRegistry()
        self._live: set[Connection] = set()  # upgraded and $disconnect not yet done (includes closing ones)
        self._tasks: set[asyncio.Task[None]] = set()  # $default invocations in flight
        self.usage = ManagementUsage()

    # -- WebSocket. --

    async def handle_upgrade(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET" or request.headers.get("Upgrade", "").lower() != "websocket":
            return await handle_rest(request)
        config = request.app[GATEWAY_CONFIG]
        received_at = time.time()
        context = ConnectionContext(
            connection_id=new_connection_id(),
            connected_at=received_at,
            source_ip=request.remote or "127.0.0.1",
            user_agent=request.headers.get("User-Agent"),
            domain_name=request.host,
            stage=config.stage,
        )
        request_id = new_connection_id()
        protocols: tuple[str, ...] = ()
        if CONNECT in self.handlers:
            event = connect_event(
                context,
                list(request.headers.items()),
                list(request.rel_url.query.items()),
                request_id=request_id,
                received_at=received_at,
            )
            outcome = await self._invoke(config, CONNECT, event, context.connection_id)
            if isinstance(outcome, web.Response):
                return outcome
            status = status_code_of(outcome)
            if status is None:
                logger.error("$connect %s: result has no valid statusCode: %.200r", context.connection_id, outcome)
                return _handshake_refusal(502, {"message": "Internal server error"}, request_id)
            if not 200 <= status < 300:
                return _handshake_refusal(status, _refusal_body(outcome, status), request_id)
            chosen = selected_subprotocol(outcome)
            protocols = (chosen,) if chosen else ()

        socket = web.WebSocketResponse(
            protocols=protocols,
            autoping=False,  # pings are frames the idle timeout counts: answered below
            compress=False,
            max_msg_size=self.limits.max_message_bytes + 1,  # aiohttp rejects sizes >= max_msg_size
            timeout=_CLOSE_HANDSHAKE_SECONDS,
        )
        loop = asyncio.get_running_loop()
        connection = Connection(context, socket, last_active_at=time.time(), last_received=loop.time(), opened=0.0)
        self._live.add(connection)
        try:
            # Registered before the 101 goes out, so a client that sees it finds its id registered. A
            # post before the handshake is done fails with 410, as one during $connect does on AWS.
            self.registry.register(connection)
            await socket.prepare(request)
            connection.opened = connection.last_received = loop.time()
            logger.info("WebSocket %s connected", context.connection_id)
            status_code, reason = await self._receive(connection, config)
        except BaseException:
            status_code, reason = WSCloseCode.ABNORMAL_CLOSURE, REASON_ABNORMAL
            raise
        finally:
            self.registry.unregister(context.connection_id)
            try:
                await self._disconnect(connection, config, int(status_code), reason)
            finally:
                connection.done.set()
                self._live.discard(connection)
        return socket

    async def _receive(self, connection: Connection, config: GatewayConfig) -> tuple[int, str]:
        """Serve the connection until it closes; returns the $disconnect status code and reason."""
        socket, limits = connection.socket, self.limits
        loop = asyncio.get_running_loop()
        client_close: tuple[int, str] | None = None
        while True:
            idle_at = connection.last_received + limits.idle_timeout_seconds
            expires_at = connection.opened + limits.max_connection_seconds
            remaining = min(idle_at, expires_at) - loop.time()
            if remaining <= 0:
                why = "idle timeout" if idle_at <= expires_at else "maximum connection duration"
                logger.info("WebSocket %s: %s, closing", connection.connection_id, why)
                connection.close(WSCloseCode.GOING_AWAY, REASON_GOING_AWAY)
                break
            try:
                message = await socket.receive(timeout=remaining)
            except TimeoutError:
                continue
            if message.type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PING, WSMsgType.PONG):
                connection.last_received = loop.time()
                connection.last_active_at = time.time()
            if message.type is WSMsgType.TEXT or message.type is WSMsgType.BINARY:
                self._dispatch(connection, config, message.data)
            elif message.type is WSMsgType.PING:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await socket.pong(message.data)
            elif message.type is WSMsgType.CLOSE:  # aiohttp has already answered the close frame
                code = int(message.data or 0)
                client_close = (code, message.extra or "") if code else (1005, REASON_NO_STATUS)
                break
            elif message.type is WSMsgType.ERROR:  # a protocol error or an oversize message: already closed
                code = int(getattr(message.data, "code", None) or socket.close_code or WSCloseCode.ABNORMAL_CLOSURE)
                too_big = code == WSCloseCode.MESSAGE_TOO_BIG
                if connection.server_close is None:
                    connection.server_close = (code, REASON_TOO_BIG if too_big else str(message.data))
                break
            elif message.type in (WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
        if connection.close_task is not None:
            with contextlib.suppress(Exception):
                await connection.close_task
        if connection.server_close is not None:
            return connection.server_close
        if client_close is not None:
            return client_close
        return WSCloseCode.ABNORMAL_CLOSURE, REASON_ABNORMAL

    def _dispatch(self, connection: Connection, config: GatewayConfig, data: str | bytes) -> None:
        handler_missing = DEFAULT not in self.handlers
        received_at = time.time()
        request_id = new_connection_id()
        event = message_event(
            connection.context, data, request_id=request_id, message_id=new_connection_id(), received_at=received_at
        )

        async def run() -> None:
            if handler_missing:
                # API Gateway's answer when no route matches the message.
                body = {"message": "Forbidden", "connectionId": connection.connection_id, "requestId": request_id}
                with contextlib.suppress(Gone):
                    await connection.send(json.dumps(body).encode())
                return
            outcome = await self._invoke(config, DEFAULT, event, connection.connection_id)
            if isinstance(outcome, web.Response):
                # A failed integration: API Gateway tells the client so in a frame; the socket stays open.
                message = "Endpoint request timed out" if outcome.status == 504 else "Internal server error"
                body = {"message": message, "connectionId": connection.connection_id, "requestId": request_id}
                with contextlib.suppress(Gone):
                    await connection.send(json.dumps(body).encode())

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disconnect(self, connection: Connection, config: GatewayConfig, status_code: int, reason: str) -> None:
        logger.info("WebSocket %s disconnected (%s %s)", connection.connection_id, status_code, reason)
        if DISCONNECT not in self.handlers:
            return
        event = disconnect_event(
            connection.context, status_code, reason, request_id=new_connection_id(), received_at=time.time()
        )
        # Shielded: a cancelled handler task (server shutdown past its timeout) still reports it.
        await asyncio.shield(self._invoke(config, DISCONNECT, event, connection.connection_id))

    async def _invoke(
        self, config: GatewayConfig, route_key: str, event: dict[str, Any], connection_id: str
    ) -> dict[str, Any] | web.Response:
        """The handler's result, or (on failure) the handshake refusal API Gateway would answer."""
        deadline = asyncio.timeout(config.integration_timeout_seconds)
        try:
            async with deadline:
                return await config.invoker.invoke(event, handler=self.handlers[route_key])
        except LambdaTimeout as exc:
            logger.error("%s %s: %s", route_key, connection_id, exc)
            return _handshake_refusal(502, {"message": "Internal server error"}, event["requestContext"]["requestId"])
        except Exception:
            if deadline.expired():
                logger.warning("%s %s: integration timed out", route_key, connection_id)
                body = {"message": "Endpoint request timed out"}
                return _handshake_refusal(504, body, event["requestContext"]["requestId"])
            logger.exception("%s %s: Lambda invocation failed", route_key, connection_id)
            return _handshake_refusal(502, {"message": "Internal server error"}, event["requestContext"]["requestId"])

    # -- Management API. --

    async def handle_management(self, request: web.Request) -> web.StreamResponse:
        # From the raw path: the id arrives percent-encoded ('=' as %3D).
        connection_id = unquote(request.rel_url.raw_path.rsplit("/", 1)[-1])
        request_id = new_connection_id()
        connection = self.registry.get(connection_id)
        if request.method == "POST":
            if request.content_length is not None and request.content_length > self.limits.max_message_bytes:
                return _management_error(413, "PayloadTooLargeException", request_id, force_close=True)
            data = await request.read()
            self.usage.record_post(len(data))
            if len(data) > self.limits.max_message_bytes:
                return _management_error(413, "PayloadTooLargeException", request_id)
            if connection is None:
                return _gone(request_id)
            try:
                await connection.send(data)
            except Gone:
                return _gone(request_id)
            return web.Response(status=200, headers={"x-amzn-RequestId": request_id})
        if connection is None or connection.closing:
            return _gone(request_id)
        if request.method == "GET":
            body = connection_info(connection.context, connection.last_active_at)
            return web.json_response(body, headers={"x-amzn-RequestId": request_id})
        # DELETE: unregistered now, so what follows gets 410; $disconnect fires when the socket closes.
        self.registry.unregister(connection_id)
        connection.close(WSCloseCode.OK, REASON_DELETED)
        return web.Response(status=204, headers={"x-amzn-RequestId": request_id})

    async def handle_usage(self, _request: web.Request) -> web.StreamResponse:
        return web.json_response(self.usage.as_dict())

    # -- Shutdown. --

    async def shutdown(self, _app: web.Application) -> None:
        """Close every socket (1001) and wait, bounded, for their $disconnect invocations."""
        live = list(self._live)
        for connection in live:
            if connection.socket.prepared:
                connection.close(WSCloseCode.GOING_AWAY, REASON_GOING_AWAY)
        waits = [asyncio.ensure_future(connection.done.wait()) for connection in live]
        pending = [*waits, *self._tasks]
        if pending:
            _, still = await asyncio.wait(pending, timeout=SHUTDOWN_GRACE_SECONDS)
            if still:
                logger.warning("%d WebSocket connection(s) or invocation(s) outlived shutdown", len(still))
            for task in waits:
                task.cancel()


WEBSOCKET_API = web.AppKey("websocket_api", WebSocketApi)
CONNECTION_REGISTRY = web.AppKey("websocket_connections", ConnectionRegistry)


def websocket_registrar(
    handlers: Mapping[str, str],
    *,
    limits: WebSocketLimits = WebSocketLimits(),
    paths: Sequence[str] = WEBSOCKET_PATHS,
) -> RouteRegistrar:
    """A `build_app` registrar: the WebSocket API on `paths` (route key → app module attribute, from
    infra.local.lambda_runtime.websocket_handlers) and the @connections management API."""

    def register(app: web.Application) -> None:
        api = WebSocketApi(handlers, limits)
        app[WEBSOCKET_API] = api
        app[CONNECTION_REGISTRY] = api.registry
        for path in paths:
            app.router.add_route("GET", path, api.handle_upgrade)
        for prefix in ("", "/{stage}"):
            for method in ("POST", "GET", "DELETE"):
                app.router.add_route(method, prefix + "/@connections/{connection_id}", api.handle_management)
        # Local only (not an API Gateway route): what the management API was asked to post, for benchmarks.
        app.router.add_route("GET", USAGE_PATH, api.handle_usage)
        app.on_shutdown.append(api.shutdown)

    return register


def _refusal_body(result: Mapping[str, Any], status: int) -> dict[str, Any] | str:
    body = result.get("body")
    if isinstance(body, str) and body:
        return body
    try:
        return {"message": HTTPStatus(status).phrase}
    except ValueError:  # a status http.HTTPStatus does not name
        return {"message": "Connection refused"}


def _handshake_refusal(status: int, body: dict[str, Any] | str, request_id: str) -> web.Response:
    text = body if isinstance(body, str) else json.dumps(body)
    return web.Response(
        status=status, text=text, content_type="application/json", headers={"x-amzn-RequestId": request_id}
    )


def _gone(request_id: str) -> web.Response:
    return _management_error(410, "GoneException", request_id)


def _management_error(status: int, error_type: str, request_id: str, *, force_close: bool = False) -> web.Response:
    # botocore reads the error code from x-amzn-ErrorType (GoneException → client.exceptions.GoneException).
    response = web.Response(
        status=status,
        text=json.dumps({"message": None}),
        content_type="application/json",
        headers={"x-amzn-ErrorType": error_type, "x-amzn-RequestId": request_id},
    )
    if force_close:  # the unread body is still on the wire
        response.force_close()
    return response
