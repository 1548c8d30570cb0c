"""What every WebSocket invocation goes through: authentication on ``$connect``, logging context,
and the translation between API Gateway's WebSocket events and the streaming service.

Chalice hands WebSocket handlers only the connection id and body; the query string and headers of the
``$connect`` request come from ``event.to_dict()``. A ``$connect`` answered with a non-2xx status makes
API Gateway refuse the handshake with that status, before the connection opens.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chalice.app import Response, WebsocketEvent
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from chalicelib import bootstrap, lazy, observability
from chalicelib.auth import bearer_token
from chalicelib.errors import AppError, MissingCredentials, Unauthorized, client_message

if TYPE_CHECKING:
    from chalicelib.models import streaming as streaming_models
else:  # the WebSocket message models load with the first WebSocket event, not in the REST function
    streaming_models = lazy.module("chalicelib.models.streaming")

logger = observability.logger

# `new WebSocket(url, ["bearer", token])`: browsers cannot set headers, but can offer subprotocols.
BEARER_SUBPROTOCOL = "bearer"
_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")


def _lower_keys(mapping: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in (mapping or {}).items()}


def connect_credentials(event: Mapping[str, Any]) -> tuple[str, str | None]:
    """The token of a $connect request and the subprotocol to answer with (None: no subprotocol).

    In order: ``Sec-WebSocket-Protocol: bearer, <token>``; ``?token=`` (kept for the spec's example: a
    URL ends up in histories and proxy logs, a subprotocol does not); ``Authorization: Bearer``.
    The answer is never the token: ``bearer`` when the client offered it, else no subprotocol (a browser
    that offered only its token fails that handshake, which is why clients send ``["bearer", token]``)."""
    query = event.get("queryStringParameters") or {}
    headers = _lower_keys(event.get("headers"))
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    chosen = BEARER_SUBPROTOCOL if BEARER_SUBPROTOCOL in offered else None
    token = next((p for p in offered if _JWT_SHAPE.match(p)), None)
    if not token and isinstance(query, dict):
        token = query.get("token")
    if not token and "authorization" in headers:
        token = bearer_token(headers["authorization"])
    if not token:
        raise MissingCredentials(
            "no token: connect with Sec-WebSocket-Protocol: bearer, <jwt>, ?token=<jwt>, or Authorization: Bearer <jwt>"
        )
    return str(token), chosen


def _refusal(error: AppError) -> Response:
    body = {"error": {"code": error.code, "message": client_message(error)}}
    headers: dict[str, str | list[str]] = {"Content-Type": "application/json"}
    if isinstance(error, Unauthorized):
        logger.info("connect refused: unauthenticated", extra={"reason": error.message})
        headers["WWW-Authenticate"] = 'Bearer realm="market-data"'
    return Response(body=json.dumps(body), status_code=error.status_code, headers=headers)


def _expiry(claims: Mapping[str, Any]) -> int | None:
    """The token's ``exp`` (required and checked by the verifier) as epoch seconds."""
    exp = claims.get("exp")
    return int(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def on_connect(event: WebsocketEvent) -> Response:
    raw = event.to_dict()
    context = raw.get("requestContext") or {}
    identity = context.get("identity") or {}
    logger.append_keys(connection_id=event.connection_id, route="$connect")
    try:
        token, subprotocol = connect_credentials(raw)
        query = raw.get("queryStringParameters") or {}
        container = bootstrap.container()
        principal = container.token_verifier.verify(token)
        logger.append_keys(user=principal.subject)
        container.streaming.connect(
            event.connection_id,
            principal.subject,
            source_ip=identity.get("sourceIp"),
            user_agent=identity.get("userAgent"),
            message_format=query.get("format") if isinstance(query, dict) else None,
            token_expires_at=_expiry(principal.claims),
        )
    except AppError as exc:
        logger.info("connection refused", extra={"status": exc.status_code, "code": exc.code})
        return _refusal(exc)
    except Exception:
        logger.exception("unhandled error in $connect")
        return _refusal(AppError("an unexpected error occurred"))
    finally:
        logger.remove_keys(["connection_id", "route", "user"])
    headers: dict[str, str | list[str]] = {"Sec-WebSocket-Protocol": subprotocol} if subprotocol else {}
    return Response(body="", status_code=200, headers=headers)


def management_endpoint_of(event: WebsocketEvent) -> str:
    """The management API of the API this event came through (what Chalice's configure() builds)."""
    return f"https://{event.domain_name}/{event.stage}"


def on_message(event: WebsocketEvent) -> None:
    logger.append_keys(connection_id=event.connection_id, route="$default")
    try:
        container = bootstrap.container()
        broadcaster = container.broadcaster(management_endpoint_of(event))
        raw = event.to_dict()
        if raw.get("isBase64Encoded"):
            try:
                body: str | None = base64.b64decode(str(raw.get("body") or "")).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                broadcaster.send(
                    event.connection_id, streaming_models.error_message("invalid_message", "send JSON text frames")
                )
                return
        else:
            body = raw.get("body")
        container.streaming.handle_message(event.connection_id, body, broadcaster)
    except Exception:
        # Nothing to answer through if the container itself is broken; the connection stays open.
        logger.exception("unhandled error in $default")
        observability.count("UnhandledError", dimensions={"route": "$default"})
    finally:
        logger.remove_keys(["connection_id", "route"])


def on_disconnect(event: WebsocketEvent) -> None:
    logger.append_keys(connection_id=event.connection_id, route="$disconnect")
    try:
        removed = bootstrap.container().streaming.disconnect(event.connection_id)
        logger.info("disconnected", extra={"subscriptions_removed": removed})
    except Exception:
        # The record expires by TTL (and is filtered on read) if this cleanup cannot run now.
        logger.exception("cleanup on $disconnect failed")
    finally:
        logger.remove_keys(["connection_id", "route"])


class ShardInvocation(BaseModel):
    """The fan-out worker's event: which stored round, to which shard (see StreamingService.publish)."""

    model_config = ConfigDict(extra="forbid")

    round: str = Field(min_length=1, max_length=200)
    shard: int = Field(ge=0, le=1023)


def on_shard_invocation(event: Mapping[str, Any]) -> dict[str, int]:
    """One asynchronous invocation of the fan-out worker. A malformed event is logged and dropped
    (retrying it cannot help); anything else that fails raises, so Lambda retries the invocation and
    then hands it to the on-failure destination."""
    try:
        task = ShardInvocation.model_validate(event)
    except ValidationError as exc:
        logger.error("malformed fan-out invocation dropped", extra={"errors": exc.error_count()})
        observability.count("FanoutInvocationRejected")
        return {"sent": 0, "gone": 0, "failed": 0}
    container = bootstrap.container()
    # Appended keys outlive the invocation in a warm container: removed again so later lines are not mislabelled.
    observability.logger.append_keys(round=task.round, shard=task.shard)
    try:
        report = container.streaming.deliver_shard(task.round, task.shard, container.broadcaster())
    finally:
        observability.logger.remove_keys(["round", "shard"])
    return {"sent": report.sent, "gone": report.gone, "failed": report.failed, "connections": report.connections}
