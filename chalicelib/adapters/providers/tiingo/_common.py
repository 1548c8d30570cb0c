"""What Tiingo's datasets share: the ticker path, the JSON shapes of its answers and its dates.

Tiingo's daily dates are New York session dates, stamped at midnight UTC; intraday (IEX) bars carry
their start time in UTC. An unknown ticker is HTTP 404 with ``{"detail": "..."}``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote as url_quote

from chalicelib.adapters.providers import values
from chalicelib.adapters.providers.calls import JsonReply, ProviderRequest
from chalicelib.errors import ProviderParseError

TIINGO_BASE_URL = "https://api.tiingo.com"


def ticker_path(symbol: str) -> str:
    # Symbols are validated upstream; quoting keeps the path one segment whatever arrives.
    return url_quote(symbol, safe="")


def headers() -> dict[str, str]:
    return {"Accept": "application/json"}


def is_index_like(symbol: str) -> bool:
    """Yahoo-style index (^GSPC) and currency/future (EURUSD=X, GC=F) symbols: Tiingo has no such tickers."""
    return symbol.startswith("^") or "=" in symbol


def not_found_detail(reply: JsonReply, provider: str) -> str | None:
    """Tiingo's unknown-ticker answer is HTTP 404 with ``{"detail": "..."}``: its text, or None when the
    reply is not a 404. A 404 without that shape is not a verdict on the symbol."""
    if reply.status != 404:
        return None
    payload = reply.payload
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        return " ".join(str(payload["detail"]).split())[:200]
    raise ProviderParseError(provider, "HTTP 404 without Tiingo's detail message")


def expect_list(payload: object, provider: str, what: str) -> list[dict[str, Any]]:
    """The JSON array of objects Tiingo documents (a ``{"detail": ...}`` object is its refusal)."""
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        raise ProviderParseError(provider, f"{what}: Tiingo said {payload['detail'][:160]!r} instead of data")
    return values.expect_list(payload, provider, what)


def symbol_request(base_url: str, template: str, symbol: str, params: dict[str, str]) -> ProviderRequest:
    """A per-symbol call (``{ticker}`` in ``template``): its 404 is Tiingo's "unknown ticker" answer,
    which the parse step reads."""
    path = template.format(ticker=ticker_path(symbol))
    return ProviderRequest(
        url=f"{base_url}{path}", params=params, headers=headers(), passthrough_statuses=frozenset({404})
    )


def parse_timestamp(value: object, provider: str) -> datetime:
    """Tiingo's ISO timestamps, with ``Z`` or ``+00:00`` (older recordings) or none (read as UTC)."""
    if not isinstance(value, str):
        raise ProviderParseError(provider, f"expected an ISO date string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ProviderParseError(provider, f"unreadable date {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def session_date(value: object, provider: str) -> date:
    """The calendar date a daily bar belongs to (Tiingo stamps it at midnight UTC of that date)."""
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError as exc:
            raise ProviderParseError(provider, f"unreadable date {value[:40]!r}") from exc
    return parse_timestamp(value, provider).date()
