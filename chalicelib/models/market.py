"""Standard market-data models: what every provider maps onto and every endpoint serves.

Field names on the wire follow the spec's quote example (`price`, `change`, `changePercent`,
`volume`); provenance fields are `source`, `as_of`, `cached`, `stale` on every market payload.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from chalicelib.errors import ValidationFailed

# Tickers as the providers spell them: letters/digits with `.`, `-`, `=` (BRK.B, BRK-B, BTC-USD,
# EURUSD=X, GC=F) and an optional leading `^` for indices (^GSPC). Anything else (paths,
# whitespace, control bytes, 40-character strings) is rejected before it reaches a cache key or URL.
SYMBOL_MAX_LENGTH = 12
_SYMBOL_RE = re.compile(rf"^\^?[A-Z0-9][A-Z0-9.\-=]{{0,{SYMBOL_MAX_LENGTH - 1}}}$")


def normalize_symbol(raw: str) -> str:
    """Upper-case and validate a ticker; raise ValidationFailed (400) with a reason a user can act on."""
    if not isinstance(raw, str) or raw == "":
        raise ValidationFailed("symbol is required")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise ValidationFailed("symbol contains control characters")
    symbol = raw.strip().upper()
    body = symbol.removeprefix("^")
    if len(body) > SYMBOL_MAX_LENGTH:
        raise ValidationFailed(f"symbol is too long ({len(body)} characters; at most {SYMBOL_MAX_LENGTH})")
    if not _SYMBOL_RE.match(symbol):
        raise ValidationFailed(
            f"symbol {raw[: SYMBOL_MAX_LENGTH + 4]!r} is not a valid ticker: use letters, digits, '.', '-', '=' "
            "and an optional leading '^' (e.g. AAPL, BRK-B, ^GSPC, EURUSD=X)"
        )
    return symbol


def _check_symbol(value: str) -> str:
    try:
        return normalize_symbol(value)
    except ValidationFailed as exc:
        raise ValueError(exc.message) from exc


Symbol = Annotated[str, AfterValidator(_check_symbol)]


class MarketModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Quote(MarketModel):
    """One instrument's latest quote, as mapped from a provider payload (no provenance yet)."""

    symbol: Symbol
    price: float
    change: float | None = None
    change_percent: float | None = Field(default=None, alias="changePercent")
    volume: int | None = Field(default=None, ge=0)
    previous_close: float | None = Field(default=None, alias="previousClose")
    open: float | None = None
    day_high: float | None = Field(default=None, alias="dayHigh")
    day_low: float | None = Field(default=None, alias="dayLow")
    fifty_two_week_high: float | None = Field(default=None, alias="fiftyTwoWeekHigh")
    fifty_two_week_low: float | None = Field(default=None, alias="fiftyTwoWeekLow")
    market_cap: int | None = Field(default=None, alias="marketCap")
    name: str | None = None
    currency: str | None = None
    exchange: str | None = None
    market_state: str | None = Field(default=None, alias="marketState")
    as_of: AwareDatetime = Field(description="when the provider says this price was current")


class Provenance(MarketModel):
    source: str = Field(description="the provider that served the data, or 'replay' for recorded data")
    as_of: AwareDatetime = Field(description="when the data was current at its source")
    retrieved_at: AwareDatetime = Field(description="when this service fetched it from the source")
    cached: bool = Field(description="served from the cache rather than fetched for this request")
    stale: bool = Field(description="past its freshness TTL; served because every source failed")


class QuoteResponse(Quote):
    """GET /api/v1/market/quote/{symbol}: the quote plus its provenance, flat, as the dashboard reads it."""

    source: str
    retrieved_at: AwareDatetime
    cached: bool
    stale: bool


class CachedQuote(MarketModel):
    """What the cache stores for `quote:SYMBOL`: the quote, who served it and when it was fetched."""

    quote: Quote
    source: str
    retrieved_at: AwareDatetime


class CacheKindStats(MarketModel):
    hits: int
    misses: int
    hit_rate: float | None = Field(description="hits / (hits + misses); null before any lookup")


class CacheStatsResponse(MarketModel):
    available: bool = Field(description="false when Redis could not be reached (the service runs uncached)")
    kinds: dict[str, CacheKindStats]
