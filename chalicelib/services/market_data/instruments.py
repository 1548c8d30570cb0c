"""One instrument's data (history, profile, news) and symbol search, each read through the cache."""

from __future__ import annotations

import dataclasses
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
from chalicelib.models.market import CompanyProfile, DataKind, HistoricalData, Interval, Period
from chalicelib.services.market_data.cached import CacheKind, CacheTtl, Served
from chalicelib.services.market_data.history import validate_history_request
from chalicelib.services.market_data.read_through import ReadThrough
from chalicelib.services.provider_chain import ProviderChain
from chalicelib.services.symbol_directory import SOURCE_LABEL as DIRECTORY_SOURCE
from chalicelib.services.symbol_directory import search_constituents

logger = observability.logger

# News and search results are fetched once at the largest size any request may ask for, then sliced
# per request: the client's `limit` is not part of the cache key, so each value of it does not cost a
# provider call (the bounds are NewsQuery's and SearchRequest's).
NEWS_FETCH_SIZE = 50
SEARCH_FETCH_SIZE = 50


class InstrumentReads:
    def __init__(self, read_through: ReadThrough, chain: ProviderChain, ttl: CacheTtl) -> None:
        self._rt = read_through
        self._chain = chain
        self._historical = CacheKind("historical", HistoricalData, ttl.historical)
        self._profile = CacheKind("profile", CompanyProfile, ttl.profile)
        self._news = CacheKind("news", NewsPayload, ttl.news)
        self._search = CacheKind("search", SearchPayload, ttl.search)

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, deadline: float | None = None
    ) -> HistoricalResponse:
        validate_history_request(period, interval)

        def fetch() -> tuple[HistoricalData, str]:
            return self._chain.fetch(
                DataKind.HISTORICAL,
                f"{period.value}/{interval.value} history for {symbol}",
                lambda p, timeout: p.get_historical(symbol, period, interval, timeout_seconds=timeout),
                deadline=deadline,
            )

        key = f"historical:{symbol}:{period.value}:{interval.value}"
        served = self._rt.get(self._historical, key, fetch, deadline, symbol=symbol)
        return served.wire(HistoricalResponse)

    def get_profile(self, symbol: str, *, deadline: float | None = None) -> ProfileResponse:
        def fetch() -> tuple[CompanyProfile, str]:
            return self._chain.fetch(
                DataKind.PROFILE,
                f"a profile for {symbol}",
                lambda p, timeout: p.get_profile(symbol, timeout_seconds=timeout),
                deadline=deadline,
            )

        served = self._rt.get(self._profile, f"profile:{symbol}", fetch, deadline, symbol=symbol)
        return served.wire(ProfileResponse)

    def get_news(self, symbol: str, limit: int, *, deadline: float | None = None) -> NewsResponse:
        def fetch() -> tuple[NewsPayload, str]:
            articles, source = self._chain.fetch(
                DataKind.NEWS,
                f"news for {symbol}",
                lambda p, timeout: p.get_news(symbol, NEWS_FETCH_SIZE, timeout_seconds=timeout),
                deadline=deadline,
            )
            newest = max((a.published_at for a in articles), default=datetime.now(UTC))
            return NewsPayload(symbol=symbol, articles=articles[:NEWS_FETCH_SIZE], as_of=newest), source

        served = self._rt.get(self._news, f"news:{symbol}", fetch, deadline, symbol=symbol)
        payload = served.payload.model_copy(update={"articles": served.payload.articles[:limit]})
        return served.wire(NewsResponse, payload)

    def search(self, query: str, limit: int, *, deadline: float | None = None) -> SearchResponse:
        normalized = " ".join(query.lower().split())

        def fetch() -> tuple[SearchPayload, str]:
            results, source = self._chain.fetch(
                DataKind.SEARCH,
                f"search results for {normalized!r}",
                lambda p, timeout: p.search(normalized, SEARCH_FETCH_SIZE, timeout_seconds=timeout),
                deadline=deadline,
            )
            payload = SearchPayload(query=normalized, results=results[:SEARCH_FETCH_SIZE], as_of=datetime.now(UTC))
            return payload, source

        try:
            served = self._rt.get(self._search, f"search:{normalized}", fetch, deadline)
            served = dataclasses.replace(
                served, payload=served.payload.model_copy(update={"results": served.payload.results[:limit]})
            )
        except ServiceUnavailable as exc:
            # No provider and no cached copy: the bundled S&P 500 list still answers (not cached, so
            # real results return as soon as a provider does).
            logger.warning("search falls back to the bundled S&P 500 list", extra={"error": exc.message})
            now = datetime.now(UTC)
            payload = SearchPayload(query=normalized, results=search_constituents(normalized, limit), as_of=now)
            served = Served(payload=payload, source=DIRECTORY_SOURCE, retrieved_at=now, cached=False, stale=False)
        return served.wire(SearchResponse)
