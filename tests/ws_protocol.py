"""Checks WebSocket messages against the AsyncAPI document's message schemas (the document the service
serves at /api/v1/asyncapi.json, built from the same models), so every message a test receives is one
the published protocol describes. Used by tests/app/test_websocket_handlers.py and
tests/integration/test_websocket_stack.py."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema

from chalicelib.asyncapi import CHANNEL, ProtocolLimits, build_document
from chalicelib.services.stream_limits import StreamingLimits

# The schemas do not depend on the limits (they are only described in the text).
_LIMITS = ProtocolLimits(StreamingLimits(max_frame_bytes=32 * 1024))


@functools.cache
def document() -> dict[str, Any]:
    return build_document(title="tests", version="0", limits=_LIMITS)


def _names(operation: str) -> frozenset[str]:
    refs = document()["operations"][operation]["messages"]
    return frozenset(ref["$ref"].removeprefix(f"#/channels/{CHANNEL}/messages/") for ref in refs)


@functools.cache
def _validator(name: str) -> jsonschema.Draft7Validator:
    payload = document()["components"]["messages"][name]["payload"]
    # Draft 7 ignores siblings of $ref, so the components only serve as the place the refs resolve in.
    schema = {**payload, "components": document()["components"]}
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def _check(message: Any, operation: str) -> None:
    assert isinstance(message, dict), message
    kind = message.get("type")
    assert kind in _names(operation), f"{kind!r} is not a message of {operation}: {str(message)[:200]}"
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in _validator(kind).iter_errors(message)]
    assert not errors, f"{kind} does not match the AsyncAPI document: {errors[:5]}"


def assert_server_message(message: Any) -> None:
    """``message`` (decoded JSON) is a documented server → client message, field for field."""
    _check(message, "sendServerMessages")


def assert_client_message(message: Any) -> None:
    _check(message, "receiveClientMessages")
