"""GET /api/v1/asyncapi.json: the WebSocket protocol as an AsyncAPI 3.0 document, public, valid against the
official AsyncAPI 3.0.0 JSON Schema (pinned: tests/fixtures/asyncapi/README.md), and describing every
message the service and its clients exchange."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from chalice.test import Client

from chalicelib.models.streaming import ERROR_CODES, Action
from tests.ws_protocol import assert_client_message, assert_server_message

OFFICIAL_SCHEMA = Path(__file__).parents[1] / "fixtures" / "asyncapi" / "asyncapi-3.0.0-without-id.json"


def _official() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(OFFICIAL_SCHEMA.read_text()))


@pytest.fixture
def document(client: Client) -> dict[str, Any]:
    response = client.http.get("/api/v1/asyncapi.json")  # no token
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = json.loads(response.body)
    return body


def test_the_served_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    errors = [f"{list(e.absolute_path)}: {e.message[:160]}" for e in _official().iter_errors(document)]
    assert errors == []


def test_the_official_schema_does_reject_a_broken_document(document: dict[str, Any]) -> None:
    """The validation above can fail: a wrong version, an operation without its action, a bad schema."""
    for path, value in (
        (("asyncapi",), "2.6.0"),
        (("operations", "sendServerMessages", "action"), "publish"),
        (("components", "schemas", "BatchMessage", "type"), 42),
    ):
        broken = copy.deepcopy(document)
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert any(True for _ in _official().iter_errors(broken)), path


def test_connect_parameters_messages_errors_and_limits_are_documented(document: dict[str, Any]) -> None:
    query = document["channels"]["marketData"]["bindings"]["ws"]["query"]["properties"]
    assert set(query) == {"token", "format"}
    assert query["format"]["enum"] == ["spec", "batch"]
    assert query["format"]["default"] == "spec"
    messages = set(document["components"]["messages"])
    assert {a.value for a in Action} <= messages  # every client message the parser accepts
    assert {"subscribed", "unsubscribed", "pong", "error", "batch"} <= messages
    assert {"quote_update", "market_update", "sector_update", "sentiment_update"} <= messages
    text = document["info"]["description"]
    for code in ERROR_CODES:
        assert f"`{code}`" in text
    # The stage's limits, from its settings (the defaults here).
    assert "50 subscriptions per connection" in text
    assert "32768 bytes" in text
    flat = " ".join(text.split())
    assert "one `resync` per 10 s" in flat
    assert "100 distinct symbols per user" in flat
    assert "`subscribe` 5, `unsubscribe` 5, `resync` 5, `ping` 1, anything malformed 5" in flat
    assert "a connection holds 60 units refilled at 1.0/s, a user (all its connections) 150 refilled at 2.5/s" in flat
    assert "10 refusals within 60 s close the connection" in flat
    error = document["components"]["schemas"]["ErrorData"]["properties"]
    assert "retry_after" in error
    for name in ("quote_update", "batch"):
        payload_ref = document["components"]["messages"][name]["payload"]["$ref"]
        schema = document["components"]["schemas"][payload_ref.rsplit("/", 1)[-1]]
        assert "seq" in schema["required"]


def test_the_specs_client_messages_match_the_document() -> None:
    for message in (
        {"type": "subscribe", "data": {"type": "market_data", "channels": ["indices", "sentiment"]}},
        {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL", "MSFT", "GOOGL"]}},
        {"type": "unsubscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}},
        {"type": "ping"},
        {"type": "resync"},
    ):
        assert_client_message(message)
    with pytest.raises(AssertionError):
        assert_client_message({"type": "subscribe", "data": {"type": "market_data", "channels": ["weather"]}})


def test_a_message_off_the_document_is_caught() -> None:
    update = {"type": "sentiment_update", "seq": 1, "data": {"score": 50.0}}
    with pytest.raises(AssertionError, match="sentiment_update"):
        assert_server_message(update)
    with pytest.raises(AssertionError, match="not a message"):
        assert_server_message({"type": "hello"})
