"""The AsyncAPI 3.0 document of the WebSocket protocol, generated from the pydantic message models (as
chalicelib/openapi.py does for REST), served without a token at GET /api/v1/asyncapi.json.

The document describes the service: its operations *receive* what clients send (subscribe, unsubscribe,
ping, resync) and *send* what clients get (acks, pong, error, the four updates with ``seq``, and the batch
frame). Message payloads are pydantic's JSON schemas under ``components.schemas``; AsyncAPI's default
schema format is a superset of JSON Schema draft 07, so pydantic's OpenAPI-style ``discriminator`` objects
(which AsyncAPI spells as a bare property name) are rewritten to that form.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from chalicelib.models.streaming import (
    ERROR_CODES,
    INVALID_MESSAGE_COST,
    MESSAGE_COSTS,
    AckMessage,
    BatchMessage,
    ErrorMessage,
    PingRequest,
    PongMessage,
    ResyncRequest,
    SequencedMarketUpdate,
    SequencedQuoteUpdate,
    SequencedSectorUpdate,
    SequencedSentimentUpdate,
    StreamFormat,
    SubscribeRequest,
    UnsubscribeRequest,
)
from chalicelib.services.stream_limits import API_GATEWAY_MAX_CONNECTION_SECONDS, StreamingLimits
from chalicelib.settings import Settings

REF_TEMPLATE = "#/components/schemas/{model}"
CHANNEL = "marketData"


@dataclass(frozen=True)
class ProtocolLimits:
    """The numbers a client author needs: the service's own limits (the stage's settings) and API Gateway's."""

    service: StreamingLimits
    max_connection_seconds: int = API_GATEWAY_MAX_CONNECTION_SECONDS
    idle_timeout_seconds: int = 600  # API Gateway's
    max_api_gateway_message_bytes: int = 128 * 1024  # API Gateway's

    @classmethod
    def of(cls, settings: Settings) -> ProtocolLimits:
        return cls(StreamingLimits.of(settings))


# (message name, model, summary). A model may carry two messages (the acks differ in ``type`` only).
_CLIENT: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("subscribe", SubscribeRequest, "Subscribe to market channels or stock quotes; answered by `subscribed`."),
    ("unsubscribe", UnsubscribeRequest, "Unsubscribe; answered by `unsubscribed`."),
    ("ping", PingRequest, "Keep-alive; answered by `pong`."),
    ("resync", ResyncRequest, "After a `seq` gap: a snapshot of every current subscription (rate-limited)."),
)
_SERVER: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("subscribed", AckMessage, "The connection's whole subscription set after a subscribe."),
    ("unsubscribed", AckMessage, "The connection's whole subscription set after an unsubscribe."),
    ("pong", PongMessage, "The answer to `ping`."),
    ("error", ErrorMessage, "A client message the service could not act on; the connection stays open."),
    ("quote_update", SequencedQuoteUpdate, "A symbol's quote (spec format; `snapshot` true on subscribe/resync)."),
    ("market_update", SequencedMarketUpdate, "Indices or movers (spec format)."),
    ("sector_update", SequencedSectorUpdate, "The 11 GICS sectors (spec format)."),
    ("sentiment_update", SequencedSentimentUpdate, "The sentiment composite (spec format)."),
    ("batch", BatchMessage, "Batch format: every changed item of a round (or a snapshot) in one frame."),
)
DATA_MESSAGES = frozenset({"quote_update", "market_update", "sector_update", "sentiment_update", "batch"})


def _asyncapi_discriminators(node: Any) -> Any:
    """pydantic writes ``discriminator: {propertyName, mapping}`` (OpenAPI); AsyncAPI wants the name."""
    if isinstance(node, dict):
        out = {key: _asyncapi_discriminators(value) for key, value in node.items()}
        discriminator = out.get("discriminator")
        if isinstance(discriminator, dict) and "propertyName" in discriminator:
            out["discriminator"] = discriminator["propertyName"]
        return out
    if isinstance(node, list):
        return [_asyncapi_discriminators(item) for item in node]
    return node


def _description(limits: ProtocolLimits) -> str:
    codes = "\n".join(f"- `{code}`: {meaning}" for code, meaning in ERROR_CODES.items())
    s = limits.service
    budget = s.message_budget
    costs = ", ".join(f"`{action.value}` {cost}" for action, cost in MESSAGE_COSTS.items())
    return f"""Real-time market data over one API Gateway WebSocket API.

**Connect** with the JWT as the subprotocol, `Sec-WebSocket-Protocol: bearer, <jwt>` (browsers:
`new WebSocket(url, ["bearer", jwt])`; preferred: URLs end up in logs), or as `?token=`, or `Authorization: Bearer`;
the handshake selects `bearer` when offered, never the token. The connection is closed (`token_expired`) once the
token's `exp` passes. Optionally `?format=`: `spec` (default) sends the spec's messages, one per changed item;
`batch` sends one `batch` frame per publish round holding every changed item (each exactly the spec message,
without `seq`), split into several frames with consecutive `seq` when one would exceed {s.max_frame_bytes} bytes.
Refusals before the socket opens: 401 (no or bad token), 400 `unknown_format`, 429 `too_many_connections`
(more than {s.max_connections_per_user} per user).

**Sequence numbers**: every data message (`quote_update`, `market_update`, `sector_update`, `sentiment_update`,
`batch`; updates and snapshots alike) has `seq`, 1 for the connection's first, then +1 per data message.
Acks, `pong` and `error` have none. A gap means a message was lost: send `resync` (or re-read
GET /api/v1/market/quotes). `seq` 0: not sequenced (the sequencing store was unavailable). Rounds reach a
connection in order; an older round than one already sent is not sent.

**Provenance**: every update's `data` has `timestamp` (when the value was current at its source), `source` (the
provider, or `replay`), `snapshot` (true for the copy sent on subscribe or resync) and `stale` (true when the value
is past its freshness TTL because every source failed: the cached copy was served, as `stale` in the REST payloads).

**Limits**: {s.max_subscriptions_per_connection} subscriptions per connection and per message; client
messages up to {s.max_message_bytes} bytes (API Gateway closes past {limits.max_api_gateway_message_bytes});
{s.max_symbols_per_user} distinct symbols per user over all its connections; one `resync` per
{s.resync_interval_seconds} s per connection. **Message budgets** (token buckets): a message costs units ({costs},
anything malformed {INVALID_MESSAGE_COST}); a connection holds {budget.per_connection.capacity} units refilled
at {budget.per_connection.refill_per_second}/s, a user (all its connections) {budget.per_user.capacity} refilled at
{budget.per_user.refill_per_second}/s. Over budget: `rate_limited` with `retry_after` seconds, and the message is not
acted on; {s.close_after_rejections} refusals within {budget.rejection_window_seconds} s close the connection.
Connections close after
{limits.idle_timeout_seconds} s idle and at most {limits.max_connection_seconds} s.

**Error codes** (`error` messages):
{codes}
"""


def build_document(*, title: str, version: str, limits: ProtocolLimits) -> dict[str, Any]:
    # Validation mode for the server's messages too: the wire models' datetime serializer returns Any, which
    # would blank every field's schema in serialization mode; their fields serialize as they validate.
    entries: list[tuple[type[BaseModel], JsonSchemaMode]] = [(model, "validation") for _, model, _ in _CLIENT + _SERVER]
    refs, definitions = models_json_schema(list(dict.fromkeys(entries)), ref_template=REF_TEMPLATE)
    messages = {
        name: {"name": name, "summary": summary, "payload": refs[(model, "validation")]}
        for name, model, summary in _CLIENT + _SERVER
    }

    def operation(action: str, names: tuple[tuple[str, type[BaseModel], str], ...], summary: str) -> dict[str, Any]:
        return {
            "action": action,
            "summary": summary,
            "channel": {"$ref": f"#/channels/{CHANNEL}"},
            "messages": [{"$ref": f"#/channels/{CHANNEL}/messages/{name}"} for name, _, _ in names],
        }

    query = {
        "type": "object",
        "properties": {
            "token": {"type": "string", "description": "the JWT (or send it as a subprotocol or header)"},
            "format": {
                "type": "string",
                "enum": [f.value for f in StreamFormat],
                "default": StreamFormat.SPEC.value,
                "description": "message format; anything else refuses the connection with 400",
            },
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": title, "version": version, "description": _description(limits)},
        "defaultContentType": "application/json",
        "servers": {
            "aws": {
                "host": "{apiId}.execute-api.{region}.amazonaws.com",
                "pathname": "/{stage}",
                "protocol": "wss",
                "description": "the deployed API Gateway WebSocket API (stack output WebSocketUrl)",
                "variables": {
                    "apiId": {"description": "the WebSocket API's id"},
                    "region": {"default": "us-east-1"},
                    "stage": {"default": "dev"},
                },
                "security": [{"$ref": "#/components/securitySchemes/queryToken"}],
            },
            "local": {
                "host": "127.0.0.1:8000",
                "pathname": "/api/v1/market/ws/market-data",
                "protocol": "ws",
                "description": "make run (also /api/v1/market/ws/stock-quotes and /)",
                "security": [{"$ref": "#/components/securitySchemes/queryToken"}],
            },
        },
        "channels": {
            CHANNEL: {
                "address": "/",
                "title": "Market data",
                "description": "Every message of the protocol goes over the one connection.",
                "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
                "bindings": {"ws": {"method": "GET", "query": query, "bindingVersion": "0.1.0"}},
            }
        },
        "operations": {
            "receiveClientMessages": operation("receive", _CLIENT, "What clients send."),
            "sendServerMessages": operation("send", _SERVER, "What the service sends to a connection."),
        },
        "components": {
            "schemas": _asyncapi_discriminators(definitions.get("$defs", {})),
            "messages": messages,
            "securitySchemes": {
                "queryToken": {
                    "type": "httpApiKey",
                    "name": "token",
                    "in": "query",
                    "description": "a JWT signed with the stage's secret",
                }
            },
        },
    }


@functools.cache
def document_for(*, title: str, version: str, limits: ProtocolLimits) -> dict[str, Any]:
    """Built once per container (the models and limits never change at run time)."""
    return build_document(title=title, version=version, limits=limits)
