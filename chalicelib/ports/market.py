"""The market-data boundaries: the cache and the data providers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import JsonValue

from chalicelib.models.market import (
    CompanyProfile,
    DataKind,
    HistoricalData,
    Interval,
    MoverType,
    NewsArticle,
    Period,
    Quote,
    SearchResult,
)


@dataclass(frozen=True)
class CacheEntry:
    """A cached value with its own freshness, so a stale copy can outlive its TTL (stale-if-error).
    ``value`` is any JSON value, stored nested in the entry's one JSON document (never JSON in a string),
    so a hit decodes one document once."""

    value: JsonValue
    stored_at: float
    fresh_until: float

    def is_fresh(self, now: float) -> bool:
        return now < self.fresh_until


@dataclass(frozen=True)
class KindCounters:
    hits: int
    misses: int
    writes: int = 0  # values written (fetched and stored) for this kind


@dataclass(frozen=True)
class LookupCount:
    """Lookups of one data kind a read stands for, counted in the read's own round trip (as hits, until
    ``record_misses`` says how many of them missed)."""

    kind: str
    count: int = 1


class Cache(Protocol):
    """A TTL cache shared by every Lambda (Redis in AWS). Never raises for an unreachable backend:
    reads miss, writes are dropped, and ``available`` turns false, so the service degrades to uncached."""

    @property
    def available(self) -> bool: ...

    def get(self, key: str) -> CacheEntry | None: ...

    def get_many(
        self, keys: Sequence[str], *, touch_hot: Sequence[str] = (), lookups: LookupCount | None = None
    ) -> dict[str, CacheEntry]:
        """The entries found, keyed by key. ``touch_hot`` symbols are marked as read now in the hot set
        (what the quote refresh keeps fresh ahead of readers) and ``lookups`` are counted, in the same
        round trip as the read: a cached read costs one round trip in all."""
        ...

    def forget_hot(self, symbols: Sequence[str]) -> None:
        """Drop symbols from the hot set (they turned out unknown: refreshing them would waste the
        job's bound on names no vendor quotes)."""
        ...

    def hot_symbols(self, limit: int) -> list[str]:
        """Symbols read within the hot-set window, most recently read first, at most ``limit``
        ([] when the backend is down: the refresh then covers subscribed and popular symbols only)."""
        ...

    def set(self, key: str, value: JsonValue, *, fresh_ttl_seconds: float, stale_ttl_seconds: float) -> None: ...

    def set_many(
        self, values: Mapping[str, JsonValue], *, fresh_ttl_seconds: float, stale_ttl_seconds: float
    ) -> None: ...

    def acquire_lock(self, key: str, ttl_seconds: float) -> str | None:
        """A token when the caller now holds the lock (or the backend is down: nothing to coordinate);
        None when another caller holds it."""
        ...

    def release_lock(self, key: str, token: str) -> None: ...

    def acquire_locks(self, keys: Sequence[str], ttl_seconds: float) -> dict[str, str | None]:
        """``acquire_lock`` for many keys in one round trip (a batch's misses): key → token, or None
        where another caller holds it."""
        ...

    def release_locks(self, tokens: Mapping[str, str]) -> None:
        """``release_lock`` for many keys (key → token) in one round trip."""
        ...

    def record_lookup(self, kind: str, *, hit: bool) -> None:
        """Count one lookup that was not counted with its read."""
        ...

    def record_misses(self, kind: str, count: int) -> None:
        """Of the lookups counted with a read (``get_many(lookups=...)``), ``count`` missed."""
        ...

    def lookup_counters(self) -> Mapping[str, KindCounters] | None:
        """Hits, misses and writes per data kind since the counters began (one counter read, never a
        keyspace scan); None when the backend is down."""
        ...


class MarketDataProvider(Protocol):
    """A market-data vendor. Every method makes at most one upstream HTTP request (so the chain can take
    exactly one unit of the vendor's quota per call) and raises a ProviderError subclass when the vendor
    cannot answer; a method outside ``capabilities`` raises ProviderUnsupported."""

    @property
    def name(self) -> str:
        """The label every payload it serves carries in ``source`` (the vendor, or ``replay``)."""
        ...

    @property
    def vendor(self) -> str:
        """The vendor this adapter talks to (yahoo, fmp, alpha_vantage, tiingo): keys its quota and breaker."""
        ...

    @property
    def capabilities(self) -> frozenset[DataKind]: ...

    @property
    def max_symbols_per_quote_call(self) -> int:
        """How many symbols one quote request may carry (1 for vendors without a batch quote)."""
        ...

    def get_quotes(self, symbols: Sequence[str], *, timeout_seconds: float) -> dict[str, Quote]:
        """Quotes for the symbols the vendor knows, keyed by symbol; unknown symbols are absent."""
        ...

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, timeout_seconds: float
    ) -> HistoricalData:
        """Bars oldest first. Unknown symbol: ProviderSymbolNotFound; nothing in range: ProviderNoData."""
        ...

    def get_profile(self, symbol: str, *, timeout_seconds: float) -> CompanyProfile: ...

    def search(self, query: str, limit: int, *, timeout_seconds: float) -> list[SearchResult]: ...

    def get_news(self, symbol: str, limit: int, *, timeout_seconds: float) -> list[NewsArticle]: ...

    def get_movers(self, mover_type: MoverType, limit: int, *, timeout_seconds: float) -> list[Quote]: ...
