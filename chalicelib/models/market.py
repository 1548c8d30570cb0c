"""Standard market-data models: what every provider maps onto and every endpoint serves.

Field names on the wire follow the spec's quote example (`price`, `change`, `changePercent`,
`volume`); provenance fields are `source`, `as_of`, `cached`, `stale` on every market payload.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from chalicelib.errors import ValidationFailed

# Tickers as the providers spell them: letters/digits with `.`, `-`, `=` (BRK.B, BRK-B, BTC-USD,
# EURUSD=X, GC=F) and an optional leading `^` for indices (^GSPC). Anything else (paths,
# whitespace, control bytes, 40-character strings) is rejected before it reaches a cache key or URL.
SYMBOL_MAX_LENGTH = 12
_SYMBOL_RE = re.compile(rf"^\^?[A-Z0-9][A-Z0-9.\-=]{{0,{SYMBOL_MAX_LENGTH - 1}}}$")
# US class shares: the S&P list and many brokers write BRK.B, Yahoo and our cache keys and topics BRK-B.
# One spelling per symbol, so the dotted form is mapped on input. Only a dot before a single A, B or C
# is a share class: Yahoo's single-letter exchange suffixes (.L, .F, .T, .V) are not share classes.
_DOTTED_SHARE_CLASS = re.compile(r"^([A-Z]{1,6})\.([ABC])$")
# The same rule as the OpenAPI document declares it for a symbol in a path or query: case-insensitive
# (the service upper-cases), no surrounding whitespace (see parse_symbol_parameter).
SYMBOL_PATTERN = rf"^\^?[A-Za-z0-9][A-Za-z0-9.=-]{{0,{SYMBOL_MAX_LENGTH - 1}}}$"
SYMBOL_SCHEMA: dict[str, object] = {
    "type": "string",
    "pattern": SYMBOL_PATTERN,
    "minLength": 1,
    "maxLength": SYMBOL_MAX_LENGTH + 1,
    "description": "ticker, case-insensitive: letters, digits, '.', '-', '=' and an optional leading '^' "
    f"(at most {SYMBOL_MAX_LENGTH} characters after it), e.g. AAPL, BRK-B, ^GSPC, EURUSD=X",
}


def normalize_symbol(raw: str) -> str:
    """Upper-case and validate a ticker; raise ValidationFailed (400) with a reason a user can act on."""
    if not isinstance(raw, str) or raw == "":
        raise ValidationFailed("symbol is required")
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in raw):
        raise ValidationFailed("symbol contains control characters")
    stripped = raw.strip()
    # Before upper-casing: str.upper() maps some non-ASCII letters onto ASCII ones ("ß" -> "SS").
    if not stripped.isascii():
        raise ValidationFailed(_not_a_ticker(raw))
    symbol = stripped.upper()
    body = symbol.removeprefix("^")
    if len(body) > SYMBOL_MAX_LENGTH:
        raise ValidationFailed(f"symbol is too long ({len(body)} characters; at most {SYMBOL_MAX_LENGTH})")
    if not _SYMBOL_RE.match(symbol):
        raise ValidationFailed(_not_a_ticker(raw))
    return _DOTTED_SHARE_CLASS.sub(r"\1-\2", symbol)


def parse_symbol_parameter(raw: str) -> str:
    """A symbol from a URL (path or query): exactly SYMBOL_PATTERN, so the server takes what the OpenAPI
    document declares and nothing more; surrounding whitespace is refused rather than trimmed."""
    if isinstance(raw, str) and raw != raw.strip():
        raise ValidationFailed(f"symbol {raw[: SYMBOL_MAX_LENGTH + 4]!r} has surrounding whitespace")
    return normalize_symbol(raw)


def _not_a_ticker(raw: str) -> str:
    return (
        f"symbol {raw[: SYMBOL_MAX_LENGTH + 4]!r} is not a valid ticker: use letters, digits, '.', '-', '=' "
        "and an optional leading '^' (e.g. AAPL, BRK-B, ^GSPC, EURUSD=X)"
    )


def _check_symbol(value: str) -> str:
    try:
        return normalize_symbol(value)
    except ValidationFailed as exc:
        raise ValueError(exc.message) from exc


Symbol = Annotated[str, AfterValidator(_check_symbol)]


class MarketModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, defer_build=True)


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


class ProvenanceFields(MarketModel):
    """Where a served value came from, as every market response carries it (flat, beside the data)."""

    source: str = Field(description="the provider that served the data, or 'replay' for recorded data")
    retrieved_at: AwareDatetime = Field(description="when this service fetched it from the source")
    cached: bool = Field(description="served from the cache rather than fetched for this request")
    stale: bool = Field(description="past its freshness TTL; served because every source failed")
    replay_day: date | None = Field(
        default=None,
        description="replay only: the replayed trading day this data belongs to (null for live data)",
    )


class QuoteResponse(ProvenanceFields, Quote):
    """GET /api/v1/market/quote/{symbol}: the quote plus its provenance, flat, as the dashboard reads it
    (ProvenanceFields first among the bases so the quote's fields come first on the wire)."""


class CacheKindStats(MarketModel):
    hits: int
    misses: int
    hit_rate: float | None = Field(description="hits / (hits + misses); null before any lookup")
    writes: int = Field(default=0, description="values fetched and stored (unknown: negative-cache entries)")


class CacheStatsResponse(MarketModel):
    available: bool = Field(description="false when Redis could not be reached (the service runs uncached)")
    kinds: dict[str, CacheKindStats]
    overall_hit_rate: float | None = Field(default=None, description="over every kind; null before any lookup")


# --- the other data kinds -------------------------------------------------------------------------


class DataKind(StrEnum):
    """What a provider can serve. ``indices`` means it can quote index symbols (^GSPC); ``sectors``
    means the sector ETFs through its quotes (the service computes sector performance from them)."""

    QUOTE = "quote"
    HISTORICAL = "historical"
    PROFILE = "profile"
    SEARCH = "search"
    NEWS = "news"
    INDICES = "indices"
    SECTORS = "sectors"
    MOVERS = "movers"


class MoverType(StrEnum):
    GAINERS = "gainers"
    LOSERS = "losers"
    ACTIVES = "actives"


class Period(StrEnum):
    """History ranges, spelled as Yahoo and the spec's cache key (`historical:AAPL:1y:1d`) spell them."""

    D1 = "1d"
    D5 = "5d"
    MO1 = "1mo"
    MO3 = "3mo"
    MO6 = "6mo"
    Y1 = "1y"
    Y2 = "2y"
    Y5 = "5y"
    Y10 = "10y"
    YTD = "ytd"
    MAX = "max"


class Interval(StrEnum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    D1 = "1d"
    WK1 = "1wk"
    MO1 = "1mo"


class PriceBar(MarketModel):
    """One OHLCV bar. ``timestamp`` is the bar's open in UTC (daily bars: the session's open)."""

    timestamp: AwareDatetime
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float
    adj_close: float | None = Field(default=None, alias="adjClose")
    volume: int | None = Field(default=None, ge=0)


class HistoricalData(MarketModel):
    """A provider's answer for one symbol's history, oldest bar first."""

    symbol: Symbol
    period: Period
    interval: Interval
    currency: str | None = None
    bars: list[PriceBar]
    as_of: AwareDatetime = Field(description="the newest bar's time")


_LINK_MAX_LENGTH = 2048
# Whitespace, control characters and characters no valid URL holds unescaped (markup breakers).
_LINK_FORBIDDEN = re.compile(r'[\x00-\x20\x7f\\<>"]')


def safe_link(value: object) -> str | None:
    """A provider's link as a client may render it: an absolute http(s) URL with a host, else None.
    Vendor text reaches dashboards: a `javascript:` or `data:` link (in any case, with any leading
    control characters a browser would skip) would run in the dashboard's origin when clicked."""
    if not isinstance(value, str):
        return None
    link = value.strip()
    if not link or len(link) > _LINK_MAX_LENGTH or _LINK_FORBIDDEN.search(link):
        return None
    try:
        parts = urlsplit(link)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return link


# Every provider URL in a payload: validated on the model, so no adapter can forget it.
SafeLink = Annotated[str | None, BeforeValidator(safe_link)]


class CompanyProfile(MarketModel):
    symbol: Symbol
    name: str | None = None
    exchange: str | None = None
    currency: str | None = None
    sector: str | None = None
    industry: str | None = None
    country: str | None = None
    website: SafeLink = Field(default=None, description="http(s) only; anything else from a provider is null")
    description: str | None = Field(default=None, description="provider text, served as JSON only")
    employees: int | None = Field(default=None, ge=0)
    market_cap: int | None = Field(default=None, alias="marketCap")
    as_of: AwareDatetime


class SearchResult(MarketModel):
    symbol: str = Field(description="as the provider spells it (may not be a US ticker)")
    name: str | None = None
    exchange: str | None = None
    asset_type: str | None = Field(default=None, alias="assetType", description="equity, etf, index, ...")
    sector: str | None = None


class NewsArticle(MarketModel):
    title: str
    url: SafeLink = Field(default=None, description="http(s) only; anything else from a provider is null")
    publisher: str | None = None
    published_at: AwareDatetime = Field(alias="publishedAt")
    summary: str | None = None
    symbols: list[str] = Field(default_factory=list)
    sentiment_score: float | None = Field(
        default=None, alias="sentimentScore", description="provider's sentiment, -1 (bearish) to 1 (bullish)"
    )
