"""The constraints the OpenAPI document declares are the ones the server enforces: each declared pattern or
bound accepts exactly the samples the server's own validator accepts (schemathesis checks the same over
the wire in tests/integration/test_api_contract.py; these pin the edge cases cheaply)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

import app as app_module
from chalicelib.errors import ValidationFailed
from chalicelib.models.api import SearchRequest
from chalicelib.models.market import parse_symbol_parameter
from chalicelib.openapi import document_for
from chalicelib.services.jobs import check_task_id

DOCUMENT = document_for(app_module.ROUTES, title="t", version="v")


def _parameter(path: str, method: str, name: str) -> dict[str, Any]:
    for parameter in DOCUMENT["paths"][path][method]["parameters"]:
        if parameter["name"] == name:
            return dict(parameter)
    raise KeyError(name)


def _accepted_by_schema(schema: dict[str, Any], value: str) -> bool:
    # fullmatch: JSON Schema's (ECMA) `$` never matches before a trailing newline, Python's `$` does.
    return (
        schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value))
        and re.fullmatch(schema["pattern"], value) is not None
    )


SYMBOL_SAMPLES = [
    "AAPL", "aapl", "BRK.B", "BRK-B", "^GSPC", "EURUSD=X", "GC=F", "A", "A" * 12, "^" + "A" * 12, "0",
    "A" * 13, "^" + "A" * 13, "", " AAPL", "AAPL ", "\u3000AAPL", "AAPL\n", "ß", "ÄPPLE", "ﬁ", "-A", ".A",
    "^^A", "^", "A/B", "A B", "A,B", "A$", "..",
]  # fmt: skip


def _server_accepts_symbol(value: str) -> bool:
    try:
        parse_symbol_parameter(value)
    except ValidationFailed:
        return False
    return True


@pytest.mark.parametrize("value", SYMBOL_SAMPLES)
@pytest.mark.parametrize(
    ("path", "method"),
    [("/api/v1/market/quote/{symbol}", "get"), ("/api/v1/market/historical/{symbol}", "get")],
)
def test_declared_symbol_pattern_is_the_servers_rule(path: str, method: str, value: str) -> None:
    schema = _parameter(path, method, "symbol")["schema"]
    assert _accepted_by_schema(schema, value) == _server_accepts_symbol(value)


def test_batch_symbols_are_declared_as_one_to_fifty_comma_separated_tickers() -> None:
    parameter = _parameter("/api/v1/market/quotes", "get", "symbols")
    assert parameter["required"] is True
    assert (parameter["style"], parameter["explode"]) == ("form", False)
    schema = parameter["schema"]
    assert (schema["type"], schema["minItems"], schema["maxItems"]) == ("array", 1, 50)
    assert schema["items"] == _parameter("/api/v1/market/quote/{symbol}", "get", "symbol")["schema"]


SEARCH_SAMPLES = [
    "apple", " apple ", "a", "a" * 64, "a" * 65, "", " ", "\u3000", "\t", "app\x00le", "apple\n", "app\x7fle",
    "Berkshire Hathaway", "ÄPPLE", "日本",
]  # fmt: skip


@pytest.mark.parametrize("value", SEARCH_SAMPLES)
def test_declared_search_query_is_the_servers_rule(value: str) -> None:
    schema = DOCUMENT["components"]["schemas"]["SearchRequest"]["properties"]["query"]
    try:
        SearchRequest.model_validate({"query": value})
        accepted = True
    except ValidationError:
        accepted = False
    assert _accepted_by_schema(schema, value) == accepted


@pytest.mark.parametrize(("limit", "accepted"), [(5, True), (5.0, True), (50, True), (0, False), (51, False),
                                                 (5.5, False), ("5", False), (True, False)])  # fmt: skip
def test_search_limit_takes_json_integers_only(limit: object, accepted: bool) -> None:
    schema = DOCUMENT["components"]["schemas"]["SearchRequest"]["properties"]["limit"]
    assert (schema["type"], schema["minimum"], schema["maximum"]) == ("integer", 1, 50)
    try:
        SearchRequest.model_validate({"query": "apple", "limit": limit})
        ok = True
    except ValidationError:
        ok = False
    assert ok is accepted


@pytest.mark.parametrize(
    "value",
    [
        "3f2b6c1e-8d4a-4b6e-9c1d-2a7e5f8b9c0d",
        "3F2B6C1E-8D4A-4B6E-9C1D-2A7E5F8B9C0D",
        "3f2b6c1e8d4a4b6e9c1d2a7e5f8b9c0d",
        "3f2b6c1e-8d4a-4b6e-9c1d-2a7e5f8b9c0d\n",
        "{3f2b6c1e-8d4a-4b6e-9c1d-2a7e5f8b9c0d}",
        "0",
    ],
)
def test_declared_task_id_is_the_servers_rule(value: str) -> None:
    schema = _parameter("/api/v1/market/jobs/{task_id}", "get", "task_id")["schema"]
    assert schema["format"] == "uuid"
    try:
        stored = check_task_id(value)
        accepted = True
    except ValidationFailed:
        accepted = False
    assert (re.fullmatch(schema["pattern"], value) is not None) == accepted
    if accepted:
        assert stored == value.lower()


def test_every_authenticated_route_declares_its_errors_with_the_error_body() -> None:
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, operations in DOCUMENT["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"400", "401", "429", "503"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status != "200":
                    assert response["content"]["application/json"]["schema"] == error_ref, (method, path, status)
            assert responses["429"]["headers"]["Retry-After"]["required"] is True
    symbol_routes = [p for p in DOCUMENT["paths"] if p.endswith("{symbol}")]
    assert all("404" in DOCUMENT["paths"][p]["get"]["responses"] for p in symbol_routes)
    operator_only = {
        ("/api/v1/market/cache/stats", "get"), ("/api/v1/market/ws/stats", "get"),
        ("/api/v1/market/jobs/status", "get"), ("/api/v1/market/jobs/{task_id}", "get"),
        ("/api/v1/market/jobs/{job_name}/run", "post"),
    }  # fmt: skip
    for path, methods in DOCUMENT["paths"].items():
        for method, operation in methods.items():
            forbidden = operation["responses"].get("403")
            assert (forbidden is not None) == ((path, method) in operator_only), (method, path)
            if forbidden is not None:
                assert "operator" in forbidden["description"]
                assert "admin" not in forbidden["description"]
    assert "415" in DOCUMENT["paths"]["/api/v1/market/search"]["post"]["responses"]


def test_enums_and_bounds_of_the_query_parameters() -> None:
    movers_type = _parameter("/api/v1/market/movers", "get", "type")["schema"]
    assert movers_type["enum"] == ["gainers", "losers", "actives"]
    limit = _parameter("/api/v1/market/movers", "get", "limit")["schema"]
    assert (limit["minimum"], limit["maximum"]) == (1, 25)
    period = _parameter("/api/v1/market/historical/{symbol}", "get", "period")["schema"]
    assert "ytd" in period["enum"]
    job = _parameter("/api/v1/market/jobs/{job_name}/run", "post", "job_name")["schema"]
    assert set(job["enum"]) == {
        "refresh_quotes", "refresh_indices", "refresh_market", "refresh_sentiment", "warm_cache", "cleanup",
    }  # fmt: skip
