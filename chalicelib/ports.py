"""The boundaries between services and the outside world, one Protocol each.

Services depend on these; adapters implement them; tests run fakes and real adapters through the
same contract tests. Later issues add Quotas, ConnectionStore, JobRunStore and Broadcaster here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

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
    """A cached value with its own freshness, so a stale copy can outlive its TTL (stale-if-error)."""

    value: str
    stored_at: float
    fresh_until: float

    def is_fresh(self, now: float) -> bool:
        return now < self.fresh_until


@dataclass(frozen=True)
class KindCounters:
    hits: int
    misses: int


@dataclass(frozen=True)
class CacheUsage:
    keys_by_kind: Mapping[str, int]
    memory_used_bytes: int | None


class Cache(Protocol):
    """A TTL cache shared by every Lambda (Redis in AWS). Never raises for an unreachable backend:
    reads miss, writes are dropped, and ``available`` turns false, so the service degrades to uncached."""

    @property
    def available(self) -> bool: ...

    def get(self, key: str) -> CacheEntry | None: ...

    def get_many(self, keys: Sequence[str]) -> dict[str, CacheEntry]:
        """The entries found, keyed by key (one round trip)."""
        ...

    def set(self, key: str, value: str, *, fresh_ttl_seconds: float, stale_ttl_seconds: float) -> None: ...

    def set_many(self, values: Mapping[str, str], *, fresh_ttl_seconds: float, stale_ttl_seconds: float) -> None: ...

    def acquire_lock(self, key: str, ttl_seconds: float) -> str | None:
        """A token when the caller now holds the lock (or the backend is down: nothing to coordinate);
        None when another caller holds it."""
        ...

    def release_lock(self, key: str, token: str) -> None: ...

    def record_lookup(self, kind: str, *, hit: bool) -> None: ...

    def lookup_counters(self) -> Mapping[str, KindCounters] | None:
        """Hits and misses per data kind since the counters began; None when the backend is down."""
        ...

    def usage(self) -> CacheUsage | None:
        """Key counts per kind and memory used; None when the backend is down."""
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


# --- shared quotas, per-user rate limits and circuit breakers (Redis in AWS) ----------------------


@dataclass(frozen=True)
class QuotaLimits:
    """A provider's shared allowance; 0 means no limit for that window."""

    per_minute: int
    per_day: int


@dataclass(frozen=True)
class QuotaDecision:
    granted: bool
    exhausted_window: str | None = None  # "minute" or "day" when refused
    retry_after_seconds: int = 0
    degraded: bool = False  # granted without coordination because the backend is down


@dataclass(frozen=True)
class QuotaUsage:
    minute_used: int
    day_used: int
    minute_resets_in_seconds: int
    day_resets_in_seconds: int


class Quotas(Protocol):
    def try_take(self, vendor: str, limits: QuotaLimits) -> QuotaDecision:
        """Take one unit from both windows atomically, or nothing at all when either is exhausted."""
        ...

    def usage(self, vendor: str) -> QuotaUsage | None: ...


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


class RateLimiter(Protocol):
    def hit(self, subject: str, limit_per_minute: int) -> RateLimitDecision: ...


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerStatus:
    state: BreakerState
    consecutive_failures: int
    open_until: float | None
    last_error: str | None
    last_error_at: float | None


class CircuitBreaker(Protocol):
    def allow(self, vendor: str) -> bool:
        """Closed: yes. Open: no until the cool-down ends; then one caller at a time gets a probe."""
        ...

    def record_success(self, vendor: str) -> BreakerState | None:
        """Close the breaker; returns the previous state when it changed."""
        ...

    def record_failure(self, vendor: str, error: str) -> BreakerState | None:
        """Count a failure; returns the new state when it changed (opened)."""
        ...

    def status(self, vendor: str) -> BreakerStatus | None: ...
