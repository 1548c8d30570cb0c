"""What Yahoo's datasets share: the hosts, symbols as path segments, and Yahoo's error objects
(``{"<envelope>": {"error": {"code", "description"}}}``, the envelope being chart, quoteSummary or finance).

Mapped against the genuine recordings in infra/local/replay/data/yahoo/.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote as url_quote

from chalicelib.adapters.providers.calls import checked_query
from chalicelib.adapters.providers.values import json_object
from chalicelib.errors import ProviderParseError, ProviderUnsupported

DEFAULT_BASE_URL = "https://query2.finance.yahoo.com"


def path_symbol(symbol: str) -> str:
    """A symbol as a URL path segment (^GSPC, EURUSD=X, BRK-B): nothing in it may act as a separator."""
    if not symbol or not symbol.strip():
        raise ValueError("a symbol is required")
    return url_quote(symbol.strip().upper(), safe="")


def error_object(body: Mapping[str, Any], envelope: str) -> tuple[str, str] | None:
    """(code, description) of Yahoo's ``{"<envelope>": {"error": {...}}}``, if the body holds one."""
    container = body.get(envelope)
    error = container.get("error") if isinstance(container, dict) else None
    if not isinstance(error, dict):
        return None
    return str(error.get("code") or ""), str(error.get("description") or "")[:200]


def envelope(payload: object, provider: str, name: str) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """Yahoo's ``{"<name>": {...}}`` container and its (code, description) error, if it holds one."""
    body = json_object(payload, provider)
    container = body.get(name)
    if not isinstance(container, dict):
        raise ProviderParseError(provider, f"no {name} in payload")
    return container, error_object(body, name)


def checked_terms(text: str, limit: int, provider: str) -> str:
    """A query (or symbol) and a limit Yahoo can be asked with; else ProviderUnsupported."""
    try:
        return checked_query(text, limit)
    except ValueError as exc:
        raise ProviderUnsupported(provider, str(exc)) from None


def search_body(payload: object, provider: str) -> dict[str, Any]:
    """The v1 search answer (search and news read it); a ``finance`` error in it is Yahoo refusing the query."""
    body = json_object(payload, provider)
    error = error_object(body, "finance")
    if error is not None:
        code, description = error
        raise ProviderUnsupported(provider, f"Yahoo refused the search: {description or code}")
    return body
