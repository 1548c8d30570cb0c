"""One instrument's data (history, profile, news) and symbol search, each read through the cache."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib import observability
from chalicelib.errors import ServiceUnavailable
from chalicelib.models.api import (
    HistoricalResponse,
    NewsPayload,
    NewsResponse,
    ProfileResponse,
    SearchPayload,
    SearchResponse,
)
from chalicelib.models.market import DataKind, Interval, Period
from chalicelib.services.market_data.cached import Served
from chalicelib.services.market_data.history import validate_history_request
from chalicelib.services.market_data.reads import ChainReads, newest, unchanged
from chalicelib.services.symbol_directory import SOURCE_LABEL as DIRECTORY_SOURCE
from chalicelib.services.symbol_directory import search_constituents

logger = observability.logger

# News and search results are fetched once at the largest size any request may ask for, then sliced
# per request: the client's `limit` is not part of the cache key, so each value of it does not cost a
# provider call (the bounds are NewsQuery's and SearchRequest's).
NEWS_FETCH_SIZE = 50
SEARCH_FETCH_SIZE = 50


class InstrumentReads(ChainReads):
    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, deadline: float | None = None
    ) -> HistoricalResponse:
        validate_history_request(period, interval)
        fetch = self._upstream(
            DataKind.HISTORICAL,
            f"{period.value}/{interval.value} history for {symbol}",
            lambda p, timeout: p.get_historical(symbol, period, interval, timeout_seconds=timeout),
            deadline,
            unchanged,
        )
        key = f"historical:{symbol}:{period.value}:{interval.value}"
        return self._read(self.kinds.historical, key, fetch, deadline, symbol=symbol).wire(HistoricalResponse)

    def get_profile(self, symbol: str, *, deadline: float | None = None) -> ProfileResponse:
        fetch = self._upstream(
            DataKind.PROFILE,
            f"a profile for {symbol}",
            lambda p, timeout: p.get_profile(symbol, timeout_seconds=timeout),
            deadline,
            unchanged,
        )
        return self._read(self.kinds.profile, f"profile:{symbol}", fetch, deadline, symbol=symbol).wire(ProfileResponse)

    def get_news(self, symbol: str, limit: int, *, deadline: float | None = None) -> NewsResponse:
        fetch = self._upstream(
            DataKind.NEWS,
            f"news for {symbol}",
            lambda p, timeout: p.get_news(symbol, NEWS_FETCH_SIZE, timeout_seconds=timeout),
            deadline,
            lambda articles: NewsPayload(
                symbol=symbol, articles=articles[:NEWS_FETCH_SIZE], as_of=newest(a.published_at for a in articles)
            ),
        )
        served = self._read(self.kinds.news, f"news:{symbol}", fetch, deadline, symbol=symbol)
        payload = served.payload.model_copy(update={"articles": served.payload.articles[:limit]})
        return served.wire(NewsResponse, payload)

    def search(self, query: str, limit: int, *, deadline: float | None = None) -> SearchResponse:
        normalized = " ".join(query.lower().split())
        fetch = self._upstream(
            DataKind.SEARCH,
            f"search results for {normalized!r}",
            lambda p, timeout: p.search(normalized, SEARCH_FETCH_SIZE, timeout_seconds=timeout),
            deadline,
            lambda results: SearchPayload(
                query=normalized, results=results[:SEARCH_FETCH_SIZE], as_of=datetime.now(UTC)
            ),
        )
        try:
            served = self._read(self.kinds.search, f"search:{normalized}", fetch, deadline)
            payload = served.payload.model_copy(update={"results": served.payload.results[:limit]})
        except ServiceUnavailable as exc:
            # No provider and no cached copy: the bundled S&P 500 list still answers (not cached, so
            # real results return as soon as a provider does).
            logger.warning("search falls back to the bundled S&P 500 list", extra={"error": exc.message})
            now = datetime.now(UTC)
            payload = SearchPayload(query=normalized, results=search_constituents(normalized, limit), as_of=now)
            served = Served(payload=payload, source=DIRECTORY_SOURCE, retrieved_at=now, cached=False, stale=False)
        return served.wire(SearchResponse, payload)
