"""Market data, read through the cache, fetched through the provider chain: the one service callers use.
Every read answers domain objects (``Served``: a payload with its provenance); the REST routes and the
WebSocket updates map them onto their wire.

Policy lives in this package, not in adapters: which key and TTL a kind uses (the parts below), and
what a lookup does (read_through: miss lock, waiting, stale copies, the negative cache, counters).
Which vendor is asked, how often, and what counts as "unknown symbol" lives in provider_chain.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import date

from chalicelib.models.api import (
    IndicesPayload,
    MoversPayload,
    NewsPayload,
    SearchPayload,
    SectorsPayload,
    SentimentPayload,
)
from chalicelib.models.market import (
    CacheKindStats,
    CacheStatsResponse,
    CompanyProfile,
    HistoricalData,
    Interval,
    MoverType,
    Period,
    Quote,
)
from chalicelib.models.served import Served
from chalicelib.ports import Cache
from chalicelib.services.market_data.cached import CacheTimings, CacheTtl
from chalicelib.services.market_data.instruments import InstrumentReads
from chalicelib.services.market_data.panels import MarketPanels, Overview
from chalicelib.services.market_data.quotes import BatchQuote, QuoteReads, QuoteRefresh
from chalicelib.services.market_data.read_through import ReadThrough
from chalicelib.services.market_data.reads import CacheKinds
from chalicelib.services.provider_chain import ProviderChain

DEFAULT_TTL = CacheTtl()


class MarketDataService:
    def __init__(
        self,
        *,
        cache: Cache,
        chain: ProviderChain,
        timings: CacheTimings,
        ttl: CacheTtl = DEFAULT_TTL,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        replay_day: Callable[[], date] | None = None,
    ) -> None:
        """``replay_day``: in replay only, the replayed trading day the source answers for right now;
        it is stored with each fetched value, so every payload says which day it belongs to."""
        self._cache = cache
        self._chain = chain
        read_through = ReadThrough(
            cache,
            timings,
            fetch_timeout_seconds=chain.provider_timeout_seconds,
            clock=clock,
            monotonic=monotonic,
            sleep=sleep,
            replay_day=replay_day,
        )
        kinds = CacheKinds.of(ttl)
        self._quotes = QuoteReads(read_through, chain, kinds)
        self._instruments = InstrumentReads(read_through, chain, kinds)
        self._panels = MarketPanels(read_through, chain, kinds)

    @property
    def chain(self) -> ProviderChain:
        return self._chain

    # --- quotes -----------------------------------------------------------------------------------

    def get_quote(self, symbol: str, *, deadline: float | None = None) -> Served[Quote]:
        return self._quotes.get_quote(symbol, deadline=deadline)

    def get_quotes(self, symbols: Sequence[str], *, deadline: float | None = None) -> list[BatchQuote]:
        return self._quotes.get_quotes(symbols, deadline=deadline)

    def refresh_quotes(self, symbols: Sequence[str], *, deadline: float | None = None) -> QuoteRefresh:
        return self._quotes.refresh_quotes(symbols, deadline=deadline)

    def recently_read_symbols(self, limit: int) -> list[str]:
        """Symbols whose quotes readers asked for within the hot-set window, most recent first."""
        return self._cache.hot_symbols(limit)

    # --- one instrument ---------------------------------------------------------------------------

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, deadline: float | None = None
    ) -> Served[HistoricalData]:
        return self._instruments.get_historical(symbol, period, interval, deadline=deadline)

    def get_profile(self, symbol: str, *, deadline: float | None = None) -> Served[CompanyProfile]:
        return self._instruments.get_profile(symbol, deadline=deadline)

    def get_news(self, symbol: str, limit: int, *, deadline: float | None = None) -> Served[NewsPayload]:
        return self._instruments.get_news(symbol, limit, deadline=deadline)

    def search(self, query: str, limit: int, *, deadline: float | None = None) -> Served[SearchPayload]:
        return self._instruments.search(query, limit, deadline=deadline)

    # --- market panels ----------------------------------------------------------------------------

    def get_movers(
        self, mover_type: MoverType, limit: int, *, deadline: float | None = None, refresh: bool = False
    ) -> Served[MoversPayload]:
        return self._panels.get_movers(mover_type, limit, deadline=deadline, refresh=refresh)

    def get_indices(self, *, deadline: float | None = None, refresh: bool = False) -> Served[IndicesPayload]:
        return self._panels.get_indices(deadline=deadline, refresh=refresh)

    def get_sectors(self, *, deadline: float | None = None, refresh: bool = False) -> Served[SectorsPayload]:
        return self._panels.get_sectors(deadline=deadline, refresh=refresh)

    def get_sentiment(self, *, deadline: float | None = None, refresh: bool = False) -> Served[SentimentPayload]:
        return self._panels.get_sentiment(deadline=deadline, refresh=refresh)

    def get_overview(self, *, deadline: float | None = None) -> Overview:
        return self._panels.get_overview(deadline=deadline)

    # --- cache statistics (counters, never a keyspace scan) ---------------------------------------

    def cache_stats(self) -> CacheStatsResponse:
        counters = self._cache.lookup_counters()
        if counters is None:
            return CacheStatsResponse(available=False, kinds={})
        kinds = {
            kind: CacheKindStats(hits=c.hits, misses=c.misses, hit_rate=_rate(c.hits, c.misses), writes=c.writes)
            for kind, c in sorted(counters.items())
        }
        hits = sum(c.hits for c in counters.values())
        misses = sum(c.misses for c in counters.values())
        return CacheStatsResponse(available=True, kinds=kinds, overall_hit_rate=_rate(hits, misses))


def _rate(hits: int, misses: int) -> float | None:
    return round(hits / (hits + misses), 4) if hits + misses else None
