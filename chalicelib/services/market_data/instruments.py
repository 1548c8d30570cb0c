"""One instrument's data (history, profile, news) and symbol search, each read through the cache."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel

from chalicelib import observability
from chalicelib.errors import ServiceUnavailable
from chalicelib.models.api import NewsPayload, SearchPayload
from chalicelib.models.market import (
    CompanyProfile,
    DataKind,
    HistoricalData,
    Interval,
    NewsArticle,
    Period,
    SearchResult,
)
from chalicelib.models.served import Provenance, Served
from chalicelib.ports import MarketDataProvider
from chalicelib.services.market_data.history import validate_history_request
from chalicelib.services.market_data.reads import ChainReads, newest, unchanged
from chalicelib.services.symbol_directory import SOURCE_LABEL as DIRECTORY_SOURCE
from chalicelib.services.symbol_directory import search_constituents

logger = observability.logger

P = TypeVar("P", bound=BaseModel)
Item = TypeVar("Item")  # an item of a vendor's list

# News and search results are fetched once at the largest size any request may ask for, then sliced
# per request: the client's `limit` is not part of the cache key, so each value of it does not cost a
# provider call (the bound is NewsQuery's and SearchRequest's).
LIST_FETCH_SIZE = 50


class InstrumentReads(ChainReads):
    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, deadline: float | None = None
    ) -> Served[HistoricalData]:
        validate_history_request(period, interval)
        fetch = self._upstream(
            DataKind.HISTORICAL,
            f"{period.value}/{interval.value} history for {symbol}",
            lambda p, timeout: p.get_historical(symbol, period, interval, timeout_seconds=timeout),
            deadline,
            unchanged,
        )
        key = f"historical:{symbol}:{period.value}:{interval.value}"
        return self._read(self.kinds.historical, key, fetch, deadline, symbol=symbol)

    def get_profile(self, symbol: str, *, deadline: float | None = None) -> Served[CompanyProfile]:
        fetch = self._upstream(
            DataKind.PROFILE,
            f"a profile for {symbol}",
            lambda p, timeout: p.get_profile(symbol, timeout_seconds=timeout),
            deadline,
            unchanged,
        )
        return self._read(self.kinds.profile, f"profile:{symbol}", fetch, deadline, symbol=symbol)

    def get_news(self, symbol: str, limit: int, *, deadline: float | None = None) -> Served[NewsPayload]:
        def news(articles: list[NewsArticle]) -> NewsPayload:
            return NewsPayload(symbol=symbol, articles=articles, as_of=newest(a.published_at for a in articles))

        fetch = self._listing(
            DataKind.NEWS,
            f"news for {symbol}",
            lambda p, n, t: p.get_news(symbol, n, timeout_seconds=t),
            news,
            deadline,
        )
        served = self._read(self.kinds.news, f"news:{symbol}", fetch, deadline, symbol=symbol)
        return served.with_payload(served.payload.model_copy(update={"articles": served.payload.articles[:limit]}))

    def search(self, query: str, limit: int, *, deadline: float | None = None) -> Served[SearchPayload]:
        normalized = " ".join(query.lower().split())

        def results(found: list[SearchResult]) -> SearchPayload:
            return SearchPayload(query=normalized, results=found, as_of=datetime.now(UTC))

        what = f"search results for {normalized!r}"
        fetch = self._listing(
            DataKind.SEARCH, what, lambda p, n, t: p.search(normalized, n, timeout_seconds=t), results, deadline
        )
        try:
            served = self._read(self.kinds.search, f"search:{normalized}", fetch, deadline)
        except ServiceUnavailable as exc:
            # No provider and no cached copy: the bundled S&P 500 list still answers (not cached, so
            # real results return as soon as a provider does).
            logger.warning("search falls back to the bundled S&P 500 list", extra={"error": exc.message})
            now = datetime.now(UTC)
            payload = SearchPayload(query=normalized, results=search_constituents(normalized, limit), as_of=now)
            return Served(payload, Provenance(DIRECTORY_SOURCE, now, cached=False, stale=False))
        return served.with_payload(served.payload.model_copy(update={"results": served.payload.results[:limit]}))

    def _listing(
        self,
        kind: DataKind,
        what: str,
        call: Callable[[MarketDataProvider, int, float], list[Item]],
        wrap: Callable[[list[Item]], P],
        deadline: float | None,
    ) -> Callable[[], tuple[P, str]]:
        """The fetch of a list (news, search results): asked at LIST_FETCH_SIZE, cut to it (a vendor may
        send more than asked), then made into the cached payload."""
        return self._upstream(
            kind,
            what,
            lambda p, timeout: call(p, LIST_FETCH_SIZE, timeout),
            deadline,
            lambda items: wrap(items[:LIST_FETCH_SIZE]),
        )
