"""The OpenAPI 3.1 document, generated from the routes' pydantic models (never written by hand).

app.py declares each route once with its models (``RouteDoc``); this module turns that list into the
document served at GET /api/v1/openapi.json. OpenAPI 3.1 uses JSON Schema 2020-12, which is what
pydantic emits, so the component schemas are pydantic's own.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from chalicelib.models.errors import ErrorBody

REF_TEMPLATE = "#/components/schemas/{model}"


# eq=False: compared and hashed by identity (a schema dict is not hashable); each is a module constant.
@dataclass(frozen=True, eq=False)
class PathParam:
    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True)
class RouteDoc:
    path: str
    method: Literal["GET", "POST"]
    summary: str
    response: type[BaseModel]
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    path_params: tuple[PathParam, ...] = ()
    public: bool = False
    # Operators only (the identity provider's operator group or scope); everyone else gets 403.
    operator: bool = False
    # The handler's first I/O is the market-data cache read (Redis): the per-user rate-limit hit rides that
    # read's round trip, so a cached request costs one. Any other route has the hit decided before its
    # handler runs (nothing it does happens for a user whose budget is spent).
    reads_cache_first: bool = False
    # Statuses besides COMMON_ERRORS this route can answer (404 unknown symbol, ...); 403 comes with operator.
    errors: tuple[int, ...] = ()
    description: str | None = None

    @property
    def error_statuses(self) -> frozenset[int]:
        return frozenset({*self.errors, *((403,) if self.operator else ())})


# What any authenticated route can answer: 400 for an unknown, repeated or malformed query parameter
# (every route refuses parameters it does not take), 401 without a valid token, 429 over the per-user
# limit, 503 when a backing store or every source is down.
COMMON_ERRORS = (400, 401, 429, 503)

_ERROR_TEXT = {
    400: "invalid input: malformed parameter or body, unknown or repeated query parameter (the message names it)",
    401: "missing or invalid token",
    403: (
        "operators only: the token is valid but carries neither the operator group (cognito:groups) "
        "nor the operator scope (scope) the identity provider issues (OPERATOR_GROUP, OPERATOR_SCOPE)"
    ),
    404: "unknown symbol or resource",
    415: "the body is not application/json",
    429: "per-user rate limit exceeded (see Retry-After, X-RateLimit-*)",
    503: "no source and no cached copy can serve it right now (see Retry-After)",
}

_INT_HEADER = {"schema": {"type": "integer", "minimum": 0}}
_RATE_LIMIT_HEADERS = {
    "X-RateLimit-Limit": {**_INT_HEADER, "description": "requests allowed per minute for this user"},
    "X-RateLimit-Remaining": {**_INT_HEADER, "description": "requests left in this minute"},
    "X-RateLimit-Reset": {**_INT_HEADER, "description": "seconds until the window resets"},
}
_ERROR_HEADERS: dict[int, dict[str, Any]] = {
    429: {
        "Retry-After": {**_INT_HEADER, "required": True, "description": "seconds to wait"},
        **_RATE_LIMIT_HEADERS,
    },
    503: {"Retry-After": {**_INT_HEADER, "description": "seconds to wait, when the service can tell"}},
}


def _operation_id(doc: RouteDoc) -> str:
    parts = [p for p in doc.path.removeprefix("/api/v1/").split("/") if p and not p.startswith("{")]
    return doc.method.lower() + "_" + "_".join(parts).replace("-", "_").replace(".", "_")


def build_document(routes: Sequence[RouteDoc], *, title: str, version: str) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for doc in routes:
        models.append((doc.response, "serialization"))
        if doc.body is not None:
            models.append((doc.body, "validation"))
    refs, definitions = models_json_schema(models, ref_template=REF_TEMPLATE)

    paths: dict[str, dict[str, Any]] = {}
    for doc in routes:
        parameters: list[dict[str, Any]] = [
            {
                "name": param.name,
                "in": "path",
                "required": True,
                "description": param.description,
                "schema": dict(param.schema),
            }
            for param in doc.path_params
        ]
        if doc.query is not None:
            schema = doc.query.model_json_schema(ref_template=REF_TEMPLATE)
            required = set(schema.get("required", []))
            for name, prop in schema.get("properties", {}).items():
                parameter: dict[str, Any] = {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": _inline(prop, schema.get("$defs", {})),
                }
                if parameter["schema"].get("type") == "array":
                    # One comma-separated value (?symbols=AAPL,MSFT), never a repeated parameter (a 400).
                    parameter.update({"style": "form", "explode": False})
                parameters.append(parameter)
        responses: dict[str, Any] = {
            "200": {
                "description": "OK",
                "headers": {} if doc.public else dict(_RATE_LIMIT_HEADERS),
                "content": {"application/json": {"schema": refs[(doc.response, "serialization")]}},
            }
        }
        error_schema = refs[(ErrorBody, "serialization")]
        for status in sorted({*COMMON_ERRORS, *doc.error_statuses}) if not doc.public else ():
            responses[str(status)] = {
                "description": _ERROR_TEXT.get(status, "error"),
                "content": {"application/json": {"schema": error_schema}},
            }
            if status in _ERROR_HEADERS:
                responses[str(status)]["headers"] = dict(_ERROR_HEADERS[status])
        operation: dict[str, Any] = {
            "operationId": _operation_id(doc),
            "summary": doc.summary,
            "parameters": parameters,
            "responses": responses,
        }
        if doc.description:
            operation["description"] = doc.description
        if doc.public:
            operation["security"] = []
        if doc.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(doc.body, "validation")]}},
            }
        paths.setdefault(doc.path, {})[doc.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }


def _inline(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Query parameters are simple: inline a $ref (an enum) instead of referencing the query model's $defs."""
    ref = prop.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1], {})
        merged = {k: v for k, v in prop.items() if k != "$ref"}
        return {**target, **merged}
    if "allOf" in prop and len(prop["allOf"]) == 1:
        return _inline({**{k: v for k, v in prop.items() if k != "allOf"}, **prop["allOf"][0]}, defs)
    return prop


@functools.cache
def _cached(routes: tuple[RouteDoc, ...], title: str, version: str) -> dict[str, Any]:
    return build_document(routes, title=title, version=version)


def document_for(routes: Sequence[RouteDoc], *, title: str, version: str) -> dict[str, Any]:
    """Built once per container (the routes never change at run time)."""
    return _cached(tuple(routes), title, version)
