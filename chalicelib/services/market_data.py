"""Market data, read through the cache.

Policy lives here, not in adapters: which key and TTL a kind uses, when a miss takes the lock, how long
a waiter waits, which providers are asked in which order, when a stale copy is better than an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from chalicelib import observability
from chalicelib.errors import ProviderError, ProviderSymbolNotFound, ServiceUnavailable, SymbolNotFound
from chalicelib.models.market import CachedQuote, CacheKindStats, CacheStatsResponse, QuoteResponse
from chalicelib.ports import Cache, CacheEntry, MarketDataProvider

logger = observability.logger


@dataclass(frozen=True)
class CacheTtl:
    """Freshness per data kind. The spec's values; sectors and movers are ours (see README)."""

    quote: float = 60
    historical: float = 3600
    profile: float = 1800
    news: float = 900
    indices: float = 120
    sentiment: float = 300
    sectors: float = 300
    movers: float = 300


@dataclass(frozen=True)
class CacheTimings:
    stale_ttl_seconds: float
    lock_ttl_seconds: float
    lock_wait_seconds: float
    lock_poll_seconds: float = 0.05


# Seconds kept back from the Lambda deadline for writing the cache and answering.
_DEADLINE_MARGIN_SECONDS = 0.5


class MarketDataService:
    def __init__(
        self,
        *,
        cache: Cache,
        quote_providers: Sequence[MarketDataProvider],
        timings: CacheTimings,
        provider_timeout_seconds: float,
        ttl: CacheTtl = CacheTtl(),
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._cache = cache
        self._quote_providers = list(quote_providers)
        self._timings = timings
        self._provider_timeout = provider_timeout_seconds
        self._ttl = ttl
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep

    # --- quotes -----------------------------------------------------------------------------------

    def get_quote(self, symbol: str, *, deadline: float | None = None) -> QuoteResponse:
        """One symbol's quote. ``symbol`` is already normalized; ``deadline`` is a monotonic time
        (the Lambda's remaining time) that bounds lock waits and provider timeouts."""
        key = f"quote:{symbol}"
        found = self._read_cached_quote(key)
        if found is not None and found[0].is_fresh(self._clock()):
            self._record_lookup("quote", hit=True)
            return _quote_response(found[1], cached=True, stale=False)
        self._record_lookup("quote", hit=False)

        token = self._cache.acquire_lock(key, self._timings.lock_ttl_seconds)
        if token is None:
            # Another caller is fetching this symbol: wait for its result instead of stampeding upstream.
            filled = self._wait_for_fresh(key, deadline)
            if filled is not None:
                return _quote_response(filled, cached=True, stale=False)
            logger.info("lock holder did not fill the cache in time; fetching", extra={"key": key})
        try:
            try:
                fetched = self._fetch_quote(symbol, deadline)
            except ProviderError as exc:
                if found is not None:
                    logger.warning("serving stale copy", extra={"key": key, "error": exc.message})
                    observability.count("StaleServed", dimensions={"kind": "quote"})
                    return _quote_response(found[1], cached=True, stale=True)
                raise ServiceUnavailable(
                    f"no quote for {symbol} is available right now: every source failed ({exc.message})",
                    retry_after_seconds=30,
                ) from exc
            self._cache.set(
                key,
                fetched.model_dump_json(by_alias=True),
                fresh_ttl_seconds=self._ttl.quote,
                stale_ttl_seconds=self._timings.stale_ttl_seconds,
            )
            return _quote_response(fetched, cached=False, stale=False)
        finally:
            if token is not None:
                self._cache.release_lock(key, token)

    def _read_cached_quote(self, key: str) -> tuple[CacheEntry, CachedQuote] | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        try:
            return entry, CachedQuote.model_validate_json(entry.value)
        except ValidationError:
            # Written by an incompatible version: a miss; the next write replaces it.
            logger.warning("discarding unreadable cached quote", extra={"key": key})
            return None

    def _fetch_quote(self, symbol: str, deadline: float | None) -> CachedQuote:
        """Ask the providers in order; the first that has the symbol wins.

        A symbol is unknown only when every provider that answered said so; if some failed, the error
        wins (it might have known the symbol). Raises SymbolNotFound or the last ProviderError."""
        last_error: ProviderError | None = None
        for provider in self._quote_providers:
            timeout = self._call_timeout(deadline)
            started = self._monotonic()
            try:
                quotes = provider.get_quotes([symbol], timeout_seconds=timeout)
            except ProviderError as exc:
                observability.count("ProviderError", dimensions={"provider": provider.name, "code": exc.code})
                logger.warning("provider failed", extra={"provider": provider.name, "error": exc.message})
                last_error = exc
                continue
            finally:
                observability.count("ProviderCall", dimensions={"provider": provider.name})
                observability.milliseconds(
                    "ProviderLatency", (self._monotonic() - started) * 1000, dimensions={"provider": provider.name}
                )
            quote = quotes.get(symbol)
            if quote is not None:
                return CachedQuote(quote=quote, source=provider.name, retrieved_at=datetime.now(UTC))
            if last_error is None:
                last_error = ProviderSymbolNotFound(provider.name, f"{symbol} is unknown")
        if last_error is None:
            raise ServiceUnavailable("no quote provider is configured", retry_after_seconds=60)
        if isinstance(last_error, ProviderSymbolNotFound):
            raise SymbolNotFound(
                f"no instrument with symbol {symbol!r} is known to our providers. Check the ticker "
                "(class shares use a dash, e.g. BRK-B; indices a caret, e.g. ^GSPC) or look it up "
                "with POST /api/v1/market/search"
            )
        raise last_error

    def _call_timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self._provider_timeout
        remaining = deadline - self._monotonic() - _DEADLINE_MARGIN_SECONDS
        if remaining <= 0.05:
            raise ServiceUnavailable("request ran out of time before reaching a provider", retry_after_seconds=5)
        return min(self._provider_timeout, remaining)

    def _wait_for_fresh(self, key: str, deadline: float | None) -> CachedQuote | None:
        give_up = self._monotonic() + self._timings.lock_wait_seconds
        if deadline is not None:
            give_up = min(give_up, deadline - _DEADLINE_MARGIN_SECONDS - self._provider_timeout)
        while self._monotonic() < give_up:
            self._sleep(self._timings.lock_poll_seconds)
            found = self._read_cached_quote(key)
            if found is not None and found[0].is_fresh(self._clock()):
                return found[1]
        return None

    # --- cache statistics -------------------------------------------------------------------------

    def _record_lookup(self, kind: str, *, hit: bool) -> None:
        self._cache.record_lookup(kind, hit=hit)
        observability.count("CacheHit" if hit else "CacheMiss", dimensions={"kind": kind})

    def cache_stats(self) -> CacheStatsResponse:
        counters = self._cache.lookup_counters()
        if counters is None:
            return CacheStatsResponse(available=False, kinds={})
        kinds = {
            kind: CacheKindStats(
                hits=c.hits,
                misses=c.misses,
                hit_rate=round(c.hits / (c.hits + c.misses), 4) if c.hits + c.misses else None,
            )
            for kind, c in sorted(counters.items())
        }
        return CacheStatsResponse(available=True, kinds=kinds)


def _quote_response(stored: CachedQuote, *, cached: bool, stale: bool) -> QuoteResponse:
    return QuoteResponse(
        **stored.quote.model_dump(by_alias=True),
        source=stored.source,
        retrieved_at=stored.retrieved_at,
        cached=cached,
        stale=stale,
    )
