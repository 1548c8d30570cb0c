"""Market data, read through the cache, fetched through the provider chain.

Policy lives here, not in adapters: which key and TTL a kind uses, when a miss takes the lock, how long
a waiter waits, when a stale copy is better than an error. Which vendor is asked, how often, and what
counts as "unknown symbol" lives in provider_chain.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from chalicelib import observability
from chalicelib.errors import AppError, NotFound, ServiceUnavailable, SymbolNotFound, ValidationFailed
from chalicelib.models.api import (
    BatchQuoteItem,
    BatchQuotesResponse,
    HistoricalResponse,
    IndexQuote,
    IndicesPayload,
    IndicesResponse,
    MoversPayload,
    MoversResponse,
    NewsPayload,
    NewsResponse,
    OverviewResponse,
    ProfileResponse,
    QuoteError,
    SearchPayload,
    SearchResponse,
    SectorPerformance,
    SectorsPayload,
    SectorsResponse,
    SentimentPayload,
    SentimentResponse,
)
from chalicelib.models.market import (
    CachedQuote,
    CacheKindStats,
    CacheStatsResponse,
    CompanyProfile,
    DataKind,
    HistoricalData,
    Interval,
    MoverType,
    Period,
    Quote,
    QuoteResponse,
)
from chalicelib.ports import Cache, CacheEntry
from chalicelib.services import sentiment
from chalicelib.services.provider_chain import (
    DEADLINE_MARGIN_SECONDS,
    AllProvidersFailed,
    NoDataAnywhere,
    ProviderChain,
    UnknownSymbol,
)
from chalicelib.services.symbol_directory import SOURCE_LABEL as DIRECTORY_SOURCE
from chalicelib.services.symbol_directory import search_constituents

logger = observability.logger

P = TypeVar("P", bound=BaseModel)
T = TypeVar("T")
R = TypeVar("R")

# The indices the dashboard shows, in display order (Yahoo's symbols; FMP uses the same).
INDICES: tuple[tuple[str, str], ...] = (
    ("^GSPC", "S&P 500"),
    ("^DJI", "Dow Jones Industrial Average"),
    ("^IXIC", "Nasdaq Composite"),
    ("^RUT", "Russell 2000"),
    ("^VIX", "CBOE Volatility Index"),
)

# The 11 GICS sectors, each measured by its Select Sector SPDR ETF (the usual market proxy).
SECTOR_ETFS: tuple[tuple[str, str], ...] = (
    ("Communication Services", "XLC"),
    ("Consumer Discretionary", "XLY"),
    ("Consumer Staples", "XLP"),
    ("Energy", "XLE"),
    ("Financials", "XLF"),
    ("Health Care", "XLV"),
    ("Industrials", "XLI"),
    ("Information Technology", "XLK"),
    ("Materials", "XLB"),
    ("Real Estate", "XLRE"),
    ("Utilities", "XLU"),
)

# Movers, news and search results are fetched once at the largest size any request may ask for, then
# sliced per request: the client's `limit` is not part of the cache key, so each value of it does not
# cost a provider call (the bounds are MoversQuery's, NewsQuery's and SearchRequest's).
MOVERS_FETCH_SIZE = 25
NEWS_FETCH_SIZE = 50
SEARCH_FETCH_SIZE = 50
# Which intervals a range may be asked in: the tightest vendor limits (Yahoo's), so any vendor can answer.
_INTRADAY_MAX_PERIOD: dict[Interval, frozenset[Period]] = {
    Interval.M1: frozenset({Period.D1, Period.D5}),
    Interval.M5: frozenset({Period.D1, Period.D5, Period.MO1}),
    Interval.M15: frozenset({Period.D1, Period.D5, Period.MO1}),
    Interval.M30: frozenset({Period.D1, Period.D5, Period.MO1}),
    Interval.H1: frozenset(
        {Period.D1, Period.D5, Period.MO1, Period.MO3, Period.MO6, Period.Y1, Period.Y2, Period.YTD}
    ),
}


@dataclass(frozen=True)
class CacheTtl:
    """Freshness per data kind. The spec's values; sectors, movers and search are ours (see README)."""

    quote: float = 60
    historical: float = 3600
    profile: float = 1800
    news: float = 900
    indices: float = 120
    sentiment: float = 300
    sectors: float = 300
    movers: float = 300
    search: float = 3600


@dataclass(frozen=True)
class CacheTimings:
    stale_ttl_seconds: float
    lock_ttl_seconds: float
    lock_wait_seconds: float
    lock_poll_seconds: float = 0.05
    # How long a vendor's "no such symbol" is remembered per data kind (0: not at all).
    negative_ttl_seconds: float = 300.0


@dataclass(frozen=True)
class Served(Generic[T]):
    """A payload with where it came from."""

    payload: T
    source: str
    retrieved_at: datetime
    cached: bool
    stale: bool
    replay_day: date | None = None

    def provenance(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "retrieved_at": self.retrieved_at,
            "cached": self.cached,
            "stale": self.stale,
            "replay_day": self.replay_day,
        }


def history_combinations() -> str:
    """The rule validate_history_request enforces, in words (the OpenAPI document's description)."""
    ranges = "; ".join(
        f"{interval.value} for {', '.join(p.value for p in Period if p in periods)}"
        for interval, periods in _INTRADAY_MAX_PERIOD.items()
    )
    others = ", ".join(i.value for i in Interval if i not in _INTRADAY_MAX_PERIOD)
    return (
        f"Intraday intervals are offered for short periods only (the tightest vendor limits, so any vendor can "
        f"answer): {ranges}. Any other combination, including an intraday interval with the default period "
        f"{Period.Y1.value}, is a 400 naming the periods the interval allows; {others} go with every period."
    )


def validate_history_request(period: Period, interval: Interval) -> None:
    allowed = _INTRADAY_MAX_PERIOD.get(interval)
    if allowed is not None and period not in allowed:
        options = ", ".join(sorted(p.value for p in allowed))
        raise ValidationFailed(
            f"interval {interval.value} is offered for periods {options} only (asked: {period.value})"
        )


class MarketDataService:
    def __init__(
        self,
        *,
        cache: Cache,
        chain: ProviderChain,
        timings: CacheTimings,
        ttl: CacheTtl = CacheTtl(),
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        replay_day: Callable[[], date] | None = None,
    ) -> None:
        """``replay_day``: in replay only, the replayed trading day the source answers for right now;
        it is stored with each fetched value, so every payload says which day it belongs to."""
        self._replay_day = replay_day
        self._cache = cache
        self._chain = chain
        self._timings = timings
        self._ttl = ttl
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep

    @property
    def chain(self) -> ProviderChain:
        return self._chain

    # --- quotes -----------------------------------------------------------------------------------

    def get_quote(self, symbol: str, *, deadline: float | None = None) -> QuoteResponse:
        """One symbol's quote. ``symbol`` is already normalized; ``deadline`` is a monotonic time
        (the Lambda's remaining time) that bounds lock waits and provider calls."""
        key = f"quote:{symbol}"
        found = self._read_cached_quote(key, touch_hot=symbol)
        if found is not None and found[0].is_fresh(self._clock()):
            self._record_lookup("quote", hit=True)
            return _quote_response(found[1], cached=True, stale=False)
        self._raise_if_known_unknown("quote", symbol)
        self._record_lookup("quote", hit=False)

        token = self._cache.acquire_lock(key, self._timings.lock_ttl_seconds)
        if token is None:
            # Another caller is fetching this symbol: wait for its result instead of stampeding upstream.
            filled = self._wait_for_fresh(deadline, lambda: self._read_cached_quote(key))
            if filled is not None:
                return _quote_response(filled, cached=True, stale=False)
            logger.info("lock holder did not fill the cache in time; fetching", extra={"key": key})
        try:
            try:
                batch = self._chain.fetch_quotes(DataKind.QUOTE, [symbol], deadline=deadline)
            except ServiceUnavailable as exc:
                return self._stale_quote_or_raise(symbol, found, exc)
            if symbol in batch.found:
                quote, source = batch.found[symbol]
                stored = CachedQuote(
                    quote=quote, source=source, retrieved_at=datetime.now(UTC), replay_day=self._current_replay_day()
                )
                self._store_quotes({symbol: stored})
                return _quote_response(stored, cached=False, stale=False)
            if symbol in batch.unknown:
                self._cache.forget_hot([symbol])
                self._remember_unknown("quote", {symbol: batch.unknown_reasons.get(symbol)})
                raise _symbol_not_found(symbol, batch.unknown_reasons.get(symbol))
            failure = AllProvidersFailed(f"a quote for {symbol}", batch.outcome)
            return self._stale_quote_or_raise(symbol, found, failure)
        finally:
            if token is not None:
                self._cache.release_lock(key, token)

    def _stale_quote_or_raise(
        self, symbol: str, found: tuple[CacheEntry, CachedQuote] | None, error: ServiceUnavailable
    ) -> QuoteResponse:
        if found is None:
            raise error
        logger.warning("serving stale copy", extra={"key": f"quote:{symbol}", "error": error.message})
        observability.count("StaleServed", dimensions={"kind": "quote"})
        return _quote_response(found[1], cached=True, stale=True)

    def get_quotes(self, symbols: Sequence[str], *, deadline: float | None = None) -> BatchQuotesResponse:
        """Many quotes in one response: cached ones from one MGET, the rest in as few upstream calls as
        the vendors allow. A symbol that fails gets its own error item; the batch itself succeeds."""
        return BatchQuotesResponse(quotes=self._quotes_with_errors(symbols, deadline))

    def refresh_quotes(
        self, symbols: Sequence[str], *, deadline: float | None = None, upstream_calls: dict[str, int] | None = None
    ) -> dict[str, QuoteResponse]:
        """Fetch and cache the given (already valid) symbols regardless of freshness (the refresh job).
        Stale copies are not returned: only values fetched now. ``upstream_calls`` (if given) is
        incremented per vendor called."""
        return {
            item.symbol: item.quote
            for item in self._quotes_with_errors(symbols, deadline, force=True, upstream_calls=upstream_calls)
            if item.quote is not None and not item.quote.stale
        }

    def recently_read_symbols(self, limit: int) -> list[str]:
        """Symbols whose quotes readers asked for within the hot-set window, most recent first."""
        return self._cache.hot_symbols(limit)

    def _quotes_with_errors(
        self,
        raw_symbols: Sequence[str],
        deadline: float | None,
        *,
        force: bool = False,
        upstream_calls: dict[str, int] | None = None,
    ) -> list[BatchQuoteItem]:
        from chalicelib.models.market import normalize_symbol  # local: avoids a cycle in type-only imports

        items: dict[str, BatchQuoteItem] = {}
        order: list[str] = []
        valid: list[str] = []
        for raw in raw_symbols:
            try:
                symbol = normalize_symbol(raw)
            except ValidationFailed as exc:
                order.append(raw)
                items[raw] = BatchQuoteItem(symbol=raw, error=QuoteError(code=exc.code, message=exc.message))
                continue
            if symbol not in items:
                order.append(symbol)
                valid.append(symbol)
                items[symbol] = BatchQuoteItem(symbol=symbol)

        # A reader's lookup marks its symbols as recently read (same round trip); a refresh's does not,
        # or the job would keep its own symbols hot forever.
        # The negative entries ride in the same MGET: a known-unknown symbol costs no extra round trip.
        cached = self._cache.get_many(
            [f"quote:{s}" for s in valid] + [_negative_key("quote", s) for s in valid],
            touch_hot=() if force else valid,
        )
        now = self._clock()
        stale: dict[str, CachedQuote] = {}
        missing: list[str] = []
        known_unknown: list[str] = []
        for symbol in valid:
            entry = cached.get(f"quote:{symbol}")
            stored = _decode_cached_quote(entry) if entry is not None else None
            if stored is not None and entry is not None and entry.is_fresh(now) and not force:
                self._record_lookup("quote", hit=True)
                items[symbol] = BatchQuoteItem(symbol=symbol, quote=_quote_response(stored, cached=True, stale=False))
                continue
            negative = cached.get(_negative_key("quote", symbol))
            if negative is not None and negative.is_fresh(now):
                if not force:
                    self._record_lookup("quote", hit=True)
                error = _symbol_not_found(symbol, negative.value or None)
                items[symbol] = BatchQuoteItem(symbol=symbol, error=QuoteError(code=error.code, message=error.message))
                known_unknown.append(symbol)
                continue
            if not force:
                self._record_lookup("quote", hit=False)
            if stored is not None:
                stale[symbol] = stored
            missing.append(symbol)

        if known_unknown:
            self._cache.forget_hot(known_unknown)
        if missing:
            try:
                batch = self._chain.fetch_quotes(DataKind.QUOTE, missing, deadline=deadline)
            except ServiceUnavailable as exc:
                for symbol in missing:
                    items[symbol] = self._stale_item(symbol, stale, exc.message)
            else:
                if upstream_calls is not None:
                    for vendor, calls in batch.outcome.upstream_calls.items():
                        upstream_calls[vendor] = upstream_calls.get(vendor, 0) + calls
                retrieved, day = datetime.now(UTC), self._current_replay_day()
                fresh = {
                    symbol: CachedQuote(quote=quote, source=source, retrieved_at=retrieved, replay_day=day)
                    for symbol, (quote, source) in batch.found.items()
                }
                self._store_quotes(fresh)
                for symbol, stored in fresh.items():
                    items[symbol] = BatchQuoteItem(
                        symbol=symbol, quote=_quote_response(stored, cached=False, stale=False)
                    )
                if batch.unknown:
                    self._cache.forget_hot(sorted(batch.unknown))
                    self._remember_unknown("quote", {s: batch.unknown_reasons.get(s) for s in batch.unknown})
                for symbol in batch.unknown:
                    error = _symbol_not_found(symbol, batch.unknown_reasons.get(symbol))
                    items[symbol] = BatchQuoteItem(
                        symbol=symbol, error=QuoteError(code=error.code, message=error.message)
                    )
                for symbol in batch.failed:
                    items[symbol] = self._stale_item(symbol, stale, batch.outcome.summary())
        return [items[s] for s in order]

    def _stale_item(self, symbol: str, stale: dict[str, CachedQuote], reason: str) -> BatchQuoteItem:
        if symbol in stale:
            observability.count("StaleServed", dimensions={"kind": "quote"})
            return BatchQuoteItem(symbol=symbol, quote=_quote_response(stale[symbol], cached=True, stale=True))
        error = ServiceUnavailable(f"no quote for {symbol} is available right now ({reason})")
        return BatchQuoteItem(symbol=symbol, error=QuoteError(code=error.code, message=error.message))

    def _store_quotes(self, quotes: dict[str, CachedQuote]) -> None:
        self._cache.set_many(
            {f"quote:{symbol}": stored.model_dump_json(by_alias=True) for symbol, stored in quotes.items()},
            fresh_ttl_seconds=self._ttl.quote,
            stale_ttl_seconds=self._timings.stale_ttl_seconds,
        )

    def _read_cached_quote(self, key: str, *, touch_hot: str | None = None) -> tuple[CacheEntry, CachedQuote] | None:
        entry = self._cache.get_many([key], touch_hot=[touch_hot]).get(key) if touch_hot else self._cache.get(key)
        if entry is None:
            return None
        stored = _decode_cached_quote(entry)
        return (entry, stored) if stored is not None else None

    # --- single-key kinds -------------------------------------------------------------------------

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

        served = self._read_through(
            "historical", f"historical:{symbol}:{period.value}:{interval.value}", self._ttl.historical,
            HistoricalData, fetch, deadline, symbol=symbol,
        )  # fmt: skip
        return HistoricalResponse(**served.payload.model_dump(), **served.provenance())

    def get_profile(self, symbol: str, *, deadline: float | None = None) -> ProfileResponse:
        def fetch() -> tuple[CompanyProfile, str]:
            return self._chain.fetch(
                DataKind.PROFILE,
                f"a profile for {symbol}",
                lambda p, timeout: p.get_profile(symbol, timeout_seconds=timeout),
                deadline=deadline,
            )

        served = self._read_through(
            "profile", f"profile:{symbol}", self._ttl.profile, CompanyProfile, fetch, deadline, symbol=symbol
        )
        return ProfileResponse(**served.payload.model_dump(), **served.provenance())

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

        served = self._read_through(
            "news", f"news:{symbol}", self._ttl.news, NewsPayload, fetch, deadline, symbol=symbol
        )
        payload = served.payload.model_copy(update={"articles": served.payload.articles[:limit]})
        return NewsResponse(**payload.model_dump(), **served.provenance())

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
            served = self._read_through(
                "search", f"search:{normalized}", self._ttl.search, SearchPayload, fetch, deadline
            )
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
        return SearchResponse(**served.payload.model_dump(), **served.provenance())

    def get_movers(
        self, mover_type: MoverType, limit: int, *, deadline: float | None = None, refresh: bool = False
    ) -> MoversResponse:
        def fetch() -> tuple[MoversPayload, str]:
            movers, source = self._chain.fetch(
                DataKind.MOVERS,
                f"market {mover_type.value}",
                lambda p, timeout: p.get_movers(mover_type, MOVERS_FETCH_SIZE, timeout_seconds=timeout),
                deadline=deadline,
            )
            newest = max((q.as_of for q in movers), default=datetime.now(UTC))
            return MoversPayload(type=mover_type, movers=movers, as_of=newest), source

        served = self._read_through(
            "movers",
            f"market:movers:{mover_type.value}",
            self._ttl.movers,
            MoversPayload,
            fetch,
            deadline,
            force=refresh,
        )
        payload = served.payload.model_copy(update={"movers": served.payload.movers[:limit]})
        return MoversResponse(**payload.model_dump(), **served.provenance())

    def get_indices(self, *, deadline: float | None = None, refresh: bool = False) -> IndicesResponse:
        def fetch() -> tuple[IndicesPayload, str]:
            quotes, source, missing, _ = self._quote_set(
                DataKind.INDICES, [s for s, _ in INDICES], "market indices", deadline
            )
            names = dict(INDICES)
            indices = [
                IndexQuote(**quotes[symbol].model_dump(), index_name=names[symbol])
                for symbol, _ in INDICES
                if symbol in quotes
            ]
            as_of = max((q.as_of for q in indices), default=datetime.now(UTC))
            return IndicesPayload(indices=indices, unavailable=missing, as_of=as_of), source

        served = self._read_through(
            "indices", "market:indices", self._ttl.indices, IndicesPayload, fetch, deadline, force=refresh
        )
        return IndicesResponse(**served.payload.model_dump(), **served.provenance())

    def get_sectors(self, *, deadline: float | None = None, refresh: bool = False) -> SectorsResponse:
        def fetch() -> tuple[SectorsPayload, str]:
            etfs = [etf for _, etf in SECTOR_ETFS]
            quotes, source, _, reasons = self._quote_set(DataKind.SECTORS, etfs, "sector performance", deadline)
            sectors = [
                SectorPerformance(
                    sector=name,
                    etf=etf,
                    price=quotes[etf].price if etf in quotes else None,
                    change_percent=quotes[etf].change_percent if etf in quotes else None,
                    as_of=quotes[etf].as_of if etf in quotes else None,
                )
                for name, etf in SECTOR_ETFS
            ]
            changes = [s.change_percent for s in sectors if s.change_percent is not None]
            return SectorsPayload(
                sectors=sectors,
                advancers=sum(1 for c in changes if c > 0),
                decliners=sum(1 for c in changes if c < 0),
                unavailable=[s.sector for s in sectors if s.change_percent is None],
                unavailable_reasons={s.sector: reasons[s.etf] for s in sectors if s.etf in reasons},
                as_of=max((q.as_of for q in quotes.values()), default=datetime.now(UTC)),
            ), source

        served = self._read_through(
            "sectors", "market:sectors", self._ttl.sectors, SectorsPayload, fetch, deadline, force=refresh
        )
        return SectorsResponse(**served.payload.model_dump(), **served.provenance())

    def get_sentiment(self, *, deadline: float | None = None, refresh: bool = False) -> SentimentResponse:
        def fetch() -> tuple[SentimentPayload, str]:
            indices = self._optional(lambda: self.get_indices(deadline=deadline))
            sectors = self._optional(lambda: self.get_sectors(deadline=deadline))
            payload = sentiment.composite(indices, sectors)
            if payload is None:
                raise ServiceUnavailable(
                    "market sentiment needs the VIX, the S&P 500 or sector quotes, and none is available",
                    retry_after_seconds=30,
                )
            sources = sorted({r.source for r in (indices, sectors) if r is not None})
            return payload, "+".join(sources)

        served = self._read_through(
            "sentiment", "market:sentiment", self._ttl.sentiment, SentimentPayload, fetch, deadline, force=refresh
        )
        return SentimentResponse(**served.payload.model_dump(), **served.provenance())

    def get_overview(self, *, deadline: float | None = None) -> OverviewResponse:
        errors: dict[str, str] = {}

        def part(name: str, call: Callable[[], R]) -> R | None:
            try:
                return call()
            except AppError as exc:
                errors[name] = exc.message
                return None

        return OverviewResponse(
            indices=part("indices", lambda: self.get_indices(deadline=deadline)),
            sectors=part("sectors", lambda: self.get_sectors(deadline=deadline)),
            gainers=part("gainers", lambda: self.get_movers(MoverType.GAINERS, 5, deadline=deadline)),
            losers=part("losers", lambda: self.get_movers(MoverType.LOSERS, 5, deadline=deadline)),
            actives=part("actives", lambda: self.get_movers(MoverType.ACTIVES, 5, deadline=deadline)),
            sentiment=part("sentiment", lambda: self.get_sentiment(deadline=deadline)),
            errors=errors,
        )

    @staticmethod
    def _optional(call: Callable[[], R]) -> R | None:
        try:
            return call()
        except AppError:
            return None

    def _quote_set(
        self, kind: DataKind, symbols: list[str], what: str, deadline: float | None
    ) -> tuple[dict[str, Quote], str, list[str], dict[str, str]]:
        """Quotes for a fixed list (indices, sector ETFs). Symbols the sources do not carry are listed as
        unavailable, each with why (unknown to the source, or the sources failed); when nothing was found
        because sources failed (not because they lack the symbols), it is an error, so a stale copy can
        be served instead of an empty panel."""
        batch = self._chain.fetch_quotes(kind, symbols, deadline=deadline)
        if not batch.found and batch.failed:
            raise AllProvidersFailed(what, batch.outcome)
        quotes = {symbol: quote for symbol, (quote, _) in batch.found.items()}
        sources = sorted({source for _, source in batch.found.values()}) or [
            p.name for p in self._chain.serving(kind)[:1]
        ]
        missing = [s for s in symbols if s not in quotes]
        reasons = {
            s: (batch.unknown_reasons.get(s) or f"{s} is not known to the data source ({'+'.join(sources)})")
            if s in batch.unknown
            else f"no source could quote {s} ({batch.outcome.summary()})"
            for s in missing
        }
        return quotes, "+".join(sources) or "none", missing, reasons

    # --- the read-through core --------------------------------------------------------------------

    def _read_through(
        self,
        kind: str,
        key: str,
        ttl: float,
        payload_type: type[P],
        fetch: Callable[[], tuple[P, str]],
        deadline: float | None,
        *,
        symbol: str | None = None,
        force: bool = False,
    ) -> Served[P]:
        """Fresh cache hit → served; else one caller per key fetches (others wait for it); on failure
        a stale copy is served if any, else the error (404 for unknown symbols, 503 otherwise)."""

        def read() -> tuple[CacheEntry, Served[P]] | None:
            entry = self._cache.get(key)
            served = _decode_served(entry, payload_type) if entry is not None else None
            return (entry, served) if entry is not None and served is not None else None

        found = read()
        # A refresh job (force) fetches whatever the cache holds, and is not a lookup to count.
        if not force:
            fresh = found is not None and found[0].is_fresh(self._clock())
            if fresh and found is not None:
                self._record_lookup(kind, hit=True)
                return found[1]
            if symbol is not None:
                self._raise_if_known_unknown(kind, symbol)
            self._record_lookup(kind, hit=False)

        token = self._cache.acquire_lock(key, self._timings.lock_ttl_seconds)
        if token is None:
            filled = self._wait_for_fresh(deadline, read)
            if filled is not None:
                return filled
        try:
            try:
                payload, source = fetch()
            except UnknownSymbol as exc:
                if symbol is not None:
                    self._remember_unknown(kind, {symbol: exc.reason})
                raise _symbol_not_found(symbol or "?", exc.reason) from exc
            except NoDataAnywhere as exc:
                if symbol is None:  # nothing for a market-wide panel is an outage, not a missing item
                    raise AllProvidersFailed(exc.what, exc.outcome) from exc
                raise NotFound(f"no provider holds {exc.what} ({exc.outcome.summary()})") from exc
            except ServiceUnavailable as exc:
                if found is None:
                    raise
                logger.warning("serving stale copy", extra={"key": key, "error": exc.message})
                observability.count("StaleServed", dimensions={"kind": kind})
                return dataclasses.replace(found[1], cached=True, stale=True)
            retrieved, day = datetime.now(UTC), self._current_replay_day()
            envelope = {
                "data": payload.model_dump(mode="json"),
                "source": source,
                "retrieved_at": retrieved.isoformat(),
                "replay_day": day.isoformat() if day else None,
            }
            self._cache.set(
                key,
                json.dumps(envelope, separators=(",", ":")),
                fresh_ttl_seconds=ttl,
                stale_ttl_seconds=self._timings.stale_ttl_seconds,
            )
            return Served(payload, source, retrieved, cached=False, stale=False, replay_day=day)
        finally:
            if token is not None:
                self._cache.release_lock(key, token)

    # --- the negative cache: "no such symbol", remembered briefly per data kind ---------------------

    def _raise_if_known_unknown(self, kind: str, symbol: str) -> None:
        """404 from the cache when a vendor said lately that ``symbol`` does not exist: repeating an
        unknown ticker costs one provider call per negative-cache lifetime, not one per request."""
        if self._timings.negative_ttl_seconds <= 0:
            return
        entry = self._cache.get(_negative_key(kind, symbol))
        if entry is None or not entry.is_fresh(self._clock()):
            return
        self._record_lookup(kind, hit=True)
        if kind == "quote":
            self._cache.forget_hot([symbol])
        raise _symbol_not_found(symbol, entry.value or None)

    def _remember_unknown(self, kind: str, reasons: dict[str, str | None]) -> None:
        if self._timings.negative_ttl_seconds <= 0 or not reasons:
            return
        self._cache.set_many(
            {_negative_key(kind, symbol): reason or "" for symbol, reason in reasons.items()},
            fresh_ttl_seconds=self._timings.negative_ttl_seconds,
            stale_ttl_seconds=0,
        )

    def _wait_for_fresh(self, deadline: float | None, read: Callable[[], tuple[CacheEntry, R] | None]) -> R | None:
        give_up = self._monotonic() + self._timings.lock_wait_seconds
        if deadline is not None:
            give_up = min(give_up, deadline - DEADLINE_MARGIN_SECONDS - self._chain.provider_timeout_seconds)
        while self._monotonic() < give_up:
            self._sleep(self._timings.lock_poll_seconds)
            found = read()
            if found is not None and found[0].is_fresh(self._clock()):
                return found[1]
        return None

    def _current_replay_day(self) -> date | None:
        return self._replay_day() if self._replay_day is not None else None

    # --- cache statistics -------------------------------------------------------------------------

    def _record_lookup(self, kind: str, *, hit: bool) -> None:
        self._cache.record_lookup(kind, hit=hit)
        observability.count("CacheHit" if hit else "CacheMiss", dimensions={"kind": kind})

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


def _negative_key(kind: str, symbol: str) -> str:
    return f"unknown:{kind}:{symbol}"


def _rate(hits: int, misses: int) -> float | None:
    return round(hits / (hits + misses), 4) if hits + misses else None


def _symbol_not_found(symbol: str, reason: str | None = None) -> SymbolNotFound:
    """404 for an unknown symbol; with the vendor's ``reason`` when it gave one (e.g. not yet listed)."""
    if reason:
        return SymbolNotFound(
            f"no instrument with symbol {symbol!r} is available ({reason}); "
            "look symbols up with POST /api/v1/market/search"
        )
    return SymbolNotFound(
        f"no instrument with symbol {symbol!r} is known to our providers. Check the ticker "
        "(class shares use a dash, e.g. BRK-B; indices a caret, e.g. ^GSPC) or look it up "
        "with POST /api/v1/market/search"
    )


def _decode_cached_quote(entry: CacheEntry) -> CachedQuote | None:
    try:
        return CachedQuote.model_validate_json(entry.value)
    except ValidationError:
        # Written by an incompatible version: a miss; the next write replaces it.
        logger.warning("discarding unreadable cached quote")
        return None


def _decode_served(entry: CacheEntry, payload_type: type[P]) -> Served[P] | None:
    try:
        envelope = json.loads(entry.value)
        return Served(
            payload=payload_type.model_validate(envelope["data"]),
            source=str(envelope["source"]),
            retrieved_at=datetime.fromisoformat(envelope["retrieved_at"]),
            cached=True,
            stale=False,
            replay_day=date.fromisoformat(envelope["replay_day"]) if envelope.get("replay_day") else None,
        )
    except (ValueError, KeyError, TypeError, ValidationError):
        logger.warning("discarding unreadable cache entry")
        return None


def _quote_response(stored: CachedQuote, *, cached: bool, stale: bool) -> QuoteResponse:
    return QuoteResponse(
        **stored.quote.model_dump(by_alias=True),
        source=stored.source,
        retrieved_at=stored.retrieved_at,
        cached=cached,
        stale=stale,
        replay_day=stored.replay_day,
    )
