"""Yahoo Finance through yfinance.

The three steps of every provider, per data kind: ``build_<kind>_request`` (pure: a ProviderRequest),
the fetch (yfinance's ``YfData.get_raw_json``, the only network I/O, always with a timeout), and
``parse_<kind>_response`` (pure: the vendor payload onto the standard models, vendor quirks onto typed
ProviderErrors). Mapped against the genuine recordings in infra/local/replay/data/yahoo/.

Every call goes through yfinance's ``YfData`` so that yfinance keeps doing what it is good at (the
cookie/crumb handshake, consent pages, its session handling) while we choose the endpoint:
- quote, indices, sectors: v7 ``/v7/finance/quote?symbols=A,B,...`` (many symbols per request);
- historical: v8 ``/v8/finance/chart/{symbol}?range=&interval=`` (parallel arrays, epoch seconds);
- profile: v10 ``/v10/finance/quoteSummary/{symbol}?modules=assetProfile,price``;
- search and news: v1 ``/v1/finance/search?q=`` (``quotes[]`` resp. ``news[]``);
- movers: v1 ``/v1/finance/screener/predefined/saved?scrIds=day_gainers|day_losers|most_actives``
  (its quotes are v7 quote objects, mapped by the same code as the quote endpoint).

Errors: yfinance raises ``requests.HTTPError`` for a 4xx/5xx answer (after retrying once with its other
cookie strategy); the body's Yahoo error object decides what it means: chart 404 "No data found, symbol
may be delisted" and quoteSummary 404 → ProviderSymbolNotFound; chart 400 "Data doesn't exist for
startDate" → ProviderNoData. A 401 is Yahoo's "Invalid Crumb" (session plumbing, a retry gets a new
crumb) → ProviderUnavailable; 403 → ProviderAuthError. Yahoo takes no API key, so no secret can leak.

yfinance (and pandas under it) is imported on first use only: a request that never reaches Yahoo does
not pay for it at cold start.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote as url_quote

import requests
from pydantic import ValidationError

from chalicelib.adapters.http import ResponseCut
from chalicelib.adapters.providers.base import BaseProvider, ProviderRequest
from chalicelib.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNoData,
    ProviderParseError,
    ProviderRateLimited,
    ProviderResponseCut,
    ProviderSymbolNotFound,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnsupported,
)
from chalicelib.models.market import (
    CompanyProfile,
    DataKind,
    HistoricalData,
    Interval,
    MoverType,
    NewsArticle,
    Period,
    PriceBar,
    Quote,
    SearchResult,
)

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
DEFAULT_BASE_URL = "https://query2.finance.yahoo.com"
# Yahoo answers long symbol lists, but URLs past ~8 KB get refused by intermediaries.
MAX_SYMBOLS_PER_QUOTE_REQUEST = 200

# Yahoo's chart spells intervals its own way (1h is "60m").
CHART_INTERVALS: Mapping[Interval, str] = {
    Interval.M1: "1m",
    Interval.M5: "5m",
    Interval.M15: "15m",
    Interval.M30: "30m",
    Interval.H1: "60m",
    Interval.D1: "1d",
    Interval.WK1: "1wk",
    Interval.MO1: "1mo",
}
# How far back Yahoo keeps intraday bars (days); daily and longer bars go back to the listing.
INTRADAY_LIMIT_DAYS: Mapping[Interval, int] = {
    Interval.M1: 7,
    Interval.M5: 60,
    Interval.M15: 60,
    Interval.M30: 60,
    Interval.H1: 730,
}
# Calendar days each range spans (ytd is computed from the clock; max is unbounded).
PERIOD_DAYS: Mapping[Period, int] = {
    Period.D1: 1,
    Period.D5: 7,
    Period.MO1: 31,
    Period.MO3: 92,
    Period.MO6: 183,
    Period.Y1: 365,
    Period.Y2: 730,
    Period.Y5: 1826,
    Period.Y10: 3653,
}
SCREENER_IDS: Mapping[MoverType, str] = {
    MoverType.GAINERS: "day_gainers",
    MoverType.LOSERS: "day_losers",
    MoverType.ACTIVES: "most_actives",
}
PROFILE_MODULES = "assetProfile,price"


@functools.cache
def load_yfinance(cache_dir: str) -> ModuleType:
    """Import yfinance once per container and point its sqlite caches at a writable path (/tmp on Lambda)."""
    import yfinance

    module: ModuleType = yfinance

    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    yfinance.set_tz_cache_location(cache_dir)  # also moves the cookie and ISIN caches
    return module


def _path_symbol(symbol: str) -> str:
    """A symbol as a URL path segment (^GSPC, EURUSD=X, BRK-B): nothing in it may act as a separator."""
    if not symbol or not symbol.strip():
        raise ValueError("a symbol is required")
    return url_quote(symbol.strip().upper(), safe="")


# --- build (pure) ---------------------------------------------------------------------------------


def build_quote_request(symbols: Sequence[str]) -> ProviderRequest:
    if not symbols:
        raise ValueError("at least one symbol is required")
    if len(symbols) > MAX_SYMBOLS_PER_QUOTE_REQUEST:
        raise ValueError(f"at most {MAX_SYMBOLS_PER_QUOTE_REQUEST} symbols per request")
    return ProviderRequest(
        url=QUOTE_URL,
        params={"symbols": ",".join(symbols), "formatted": "false", "lang": "en-US", "region": "US"},
    )


def period_days(period: Period, now: datetime) -> int | None:
    """Calendar days ``period`` reaches back from ``now``; None for ``max``."""
    if period is Period.MAX:
        return None
    if period is Period.YTD:
        today = now.astimezone(UTC).date()
        return (today - today.replace(month=1, day=1)).days + 1
    return PERIOD_DAYS[period]


def build_historical_request(
    symbol: str, period: Period, interval: Interval, *, now: datetime, base_url: str = DEFAULT_BASE_URL
) -> ProviderRequest:
    """v8 chart for ``period`` at ``interval``. Raises ProviderUnsupported (provider ``yahoo``) outside
    Yahoo's intraday limits: 1m only within 7 days, other minute bars within 60 days, 1h within 730."""
    limit = INTRADAY_LIMIT_DAYS.get(interval)
    if limit is not None:
        days = period_days(period, now)
        if days is None or days > limit:
            raise ProviderUnsupported(
                "yahoo", f"{interval.value} bars reach back {limit} days at most; period {period.value} is longer"
            )
    return ProviderRequest(
        url=f"{base_url}/v8/finance/chart/{_path_symbol(symbol)}",
        params={
            "range": period.value,
            "interval": CHART_INTERVALS[interval],
            "includeAdjustedClose": "true",
            "events": "div,split",
        },
    )


def build_profile_request(symbol: str, *, base_url: str = DEFAULT_BASE_URL) -> ProviderRequest:
    return ProviderRequest(
        url=f"{base_url}/v10/finance/quoteSummary/{_path_symbol(symbol)}",
        params={"modules": PROFILE_MODULES, "formatted": "false"},
    )


def build_search_request(query: str, limit: int, *, base_url: str = DEFAULT_BASE_URL) -> ProviderRequest:
    if not query or not query.strip():
        raise ValueError("a search query is required")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/v1/finance/search",
        params={"q": query.strip(), "quotesCount": str(limit), "newsCount": "0"},
    )


def build_news_request(symbol: str, limit: int, *, base_url: str = DEFAULT_BASE_URL) -> ProviderRequest:
    if not symbol or not symbol.strip():
        raise ValueError("a symbol is required")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/v1/finance/search",
        params={"q": symbol.strip().upper(), "quotesCount": "0", "newsCount": str(limit)},
    )


def build_movers_request(mover_type: MoverType, limit: int, *, base_url: str = DEFAULT_BASE_URL) -> ProviderRequest:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/v1/finance/screener/predefined/saved",
        params={"scrIds": SCREENER_IDS[mover_type], "count": str(limit), "formatted": "false"},
    )


# --- parse (pure) ---------------------------------------------------------------------------------


def _number(item: Mapping[str, Any], key: str) -> float | None:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _integer(item: Mapping[str, Any], key: str) -> int | None:
    value = _number(item, key)
    return int(value) if value is not None else None


def _text(item: Mapping[str, Any], *keys: str) -> str | None:
    """The first non-empty string among ``keys`` ("None", "-" and blanks count as empty)."""
    for key in keys:
        value = item.get(key)
        if isinstance(value, str) and value.strip() and value.strip().lower() not in {"none", "-", "null", "n/a"}:
            return value.strip()
    return None


def _object(payload: object, provider: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ProviderParseError(provider, f"expected a JSON object, got {type(payload).__name__}")
    return payload


def _epoch(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def quote_from_item(item: Mapping[str, Any], provider: str, *, now: datetime) -> Quote | None:
    """A v7 quote object (also the screener's) onto Quote; None when it carries no price."""
    symbol = item.get("symbol")
    if not isinstance(symbol, str):
        raise ProviderParseError(provider, "quote item without a symbol")
    price = _number(item, "regularMarketPrice")
    if price is None:
        return None
    market_time = _epoch(item.get("regularMarketTime"))
    try:
        return Quote(
            symbol=symbol,
            price=price,
            change=_number(item, "regularMarketChange"),
            change_percent=_number(item, "regularMarketChangePercent"),
            volume=_integer(item, "regularMarketVolume"),
            previous_close=_number(item, "regularMarketPreviousClose"),
            open=_number(item, "regularMarketOpen"),
            day_high=_number(item, "regularMarketDayHigh"),
            day_low=_number(item, "regularMarketDayLow"),
            fifty_two_week_high=_number(item, "fiftyTwoWeekHigh"),
            fifty_two_week_low=_number(item, "fiftyTwoWeekLow"),
            market_cap=_integer(item, "marketCap"),
            name=_text(item, "longName", "shortName", "displayName"),
            currency=_text(item, "currency"),
            exchange=_text(item, "fullExchangeName", "exchange"),
            market_state=_text(item, "marketState"),
            as_of=market_time or now,
        )
    except ValidationError as exc:
        raise ProviderParseError(provider, f"unexpected quote for {symbol!r}: {exc.errors()[0]['msg']}") from exc


def parse_quote_response(
    payload: object, provider: str, *, now: datetime | None = None, requested: Sequence[str] = ()
) -> dict[str, Quote]:
    """Map a v7 quote payload onto Quote models, keyed by symbol. Items without a price are skipped
    (Yahoo lists some instruments it has no market data for); unknown symbols are simply absent.

    A "Not Found" error beside a result list is about symbols left out of it, not about the call: for a
    single requested symbol with an empty result it is ProviderSymbolNotFound carrying the description
    (the reason reaches the 404); for a batch it is ignored (missing symbols are unknown, as always).
    Any other error object is the call failing (ProviderUnavailable)."""
    body = _object(payload, provider)
    # Errors come either inside quoteResponse or, for auth/crumb failures, under "finance".
    envelope = body.get("quoteResponse") or body.get("finance")
    if not isinstance(envelope, dict):
        raise ProviderParseError(provider, "no quoteResponse in payload")
    error = envelope.get("error")
    result = envelope.get("result")
    if error:
        description = error.get("description") if isinstance(error, dict) else str(error)
        per_symbol = isinstance(error, dict) and error.get("code") == "Not Found" and isinstance(result, list)
        if not per_symbol:
            raise ProviderUnavailable(provider, f"Yahoo error: {str(description)[:200]}")
        if len(requested) == 1 and not result and description:
            raise ProviderSymbolNotFound(provider, str(description)[:200])
    if not isinstance(result, list):
        raise ProviderParseError(provider, "quoteResponse.result is not a list")
    moment = now or datetime.now(UTC)
    quotes: dict[str, Quote] = {}
    for item in result:
        if not isinstance(item, dict):
            raise ProviderParseError(provider, "quote item without a symbol")
        quote = quote_from_item(item, provider, now=moment)
        if quote is not None:
            quotes[quote.symbol] = quote
    return quotes


def _error_object(body: Mapping[str, Any], envelope: str) -> tuple[str, str] | None:
    """(code, description) of Yahoo's ``{"<envelope>": {"error": {...}}}``, if the body holds one."""
    container = body.get(envelope)
    error = container.get("error") if isinstance(container, dict) else None
    if not isinstance(error, dict):
        return None
    return str(error.get("code") or ""), str(error.get("description") or "")[:200]


def chart_error(status: int, code: str, description: str, provider: str) -> ProviderError:
    """Yahoo's chart error object onto a typed error (shared by 200 bodies and HTTP error bodies)."""
    if status == 404 or code == "Not Found":
        return ProviderSymbolNotFound(provider, f"Yahoo: {description or code}")
    if status == 400 or code == "Bad Request":
        return ProviderNoData(provider, f"Yahoo: {description or code}")
    if status == 422 or code == "Unprocessable Entity":
        return ProviderUnsupported(provider, f"Yahoo: {description or code}")
    return ProviderUnavailable(provider, f"Yahoo chart error: {description or code}")


def _bar_value(series: Mapping[str, Any], key: str, index: int) -> object:
    values = series.get(key)
    if not isinstance(values, list) or index >= len(values):
        return None
    return values[index]


def _float_or_none(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def parse_historical_response(
    payload: object, provider: str, *, symbol: str, period: Period, interval: Interval
) -> HistoricalData:
    """v8 chart onto HistoricalData: ``timestamp[]`` (epoch seconds, bar open) indexes the parallel
    ``indicators.quote[0]`` arrays and ``indicators.adjclose[0].adjclose``. Bars whose close is null are
    dropped; no ``timestamp`` key (a weekend's 1m range) or no bar left → ProviderNoData."""
    body = _object(payload, provider)
    chart = body.get("chart")
    if not isinstance(chart, dict):
        raise ProviderParseError(provider, "no chart in payload")
    error = _error_object(body, "chart")
    if error is not None:
        raise chart_error(200, *error, provider)
    results = chart.get("result")
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise ProviderParseError(provider, "chart.result is not a non-empty list")
    result = results[0]
    raw_meta = result.get("meta")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    timestamps = result.get("timestamp")
    if timestamps is None or timestamps == []:
        raise ProviderNoData(provider, f"Yahoo has no {interval.value} bars for {symbol} over {period.value}")
    if not isinstance(timestamps, list):
        raise ProviderParseError(provider, "chart timestamp is not a list")
    indicators = result.get("indicators")
    quotes = indicators.get("quote") if isinstance(indicators, dict) else None
    if not isinstance(quotes, list) or not quotes or not isinstance(quotes[0], dict):
        raise ProviderParseError(provider, "chart indicators.quote is missing")
    series: dict[str, Any] = quotes[0]
    closes = series.get("close")
    if not isinstance(closes, list) or len(closes) != len(timestamps):
        raise ProviderParseError(provider, "chart close[] does not match timestamp[]")
    adjusted: dict[str, Any] = {}
    adjclose = indicators.get("adjclose") if isinstance(indicators, dict) else None
    if isinstance(adjclose, list) and adjclose and isinstance(adjclose[0], dict):
        adjusted = adjclose[0]
    bars: list[PriceBar] = []
    for index, stamp in enumerate(timestamps):
        close = _float_or_none(closes[index])
        if close is None:
            continue
        opened_at = _epoch(stamp)
        if opened_at is None:
            raise ProviderParseError(provider, f"chart timestamp {stamp!r} is not epoch seconds")
        volume = _float_or_none(_bar_value(series, "volume", index))
        try:
            bars.append(
                PriceBar(
                    timestamp=opened_at,
                    open=_float_or_none(_bar_value(series, "open", index)),
                    high=_float_or_none(_bar_value(series, "high", index)),
                    low=_float_or_none(_bar_value(series, "low", index)),
                    close=close,
                    adj_close=_float_or_none(_bar_value(adjusted, "adjclose", index)),
                    volume=int(volume) if volume is not None else None,
                )
            )
        except ValidationError as exc:
            raise ProviderParseError(provider, f"unexpected bar for {symbol!r}: {exc.errors()[0]['msg']}") from exc
    if not bars:
        raise ProviderNoData(provider, f"Yahoo has no {interval.value} closes for {symbol} over {period.value}")
    bars.sort(key=lambda bar: bar.timestamp)
    try:
        return HistoricalData(
            symbol=symbol,
            period=period,
            interval=interval,
            currency=_text(meta, "currency"),
            bars=bars,
            as_of=bars[-1].timestamp,
        )
    except ValidationError as exc:
        raise ProviderParseError(provider, f"unexpected history for {symbol!r}: {exc.errors()[0]['msg']}") from exc


def parse_profile_response(payload: object, provider: str, *, symbol: str, now: datetime) -> CompanyProfile:
    """v10 quoteSummary (modules assetProfile or summaryProfile, plus price) onto CompanyProfile.
    ``as_of`` is the price module's ``regularMarketTime`` when present, else ``now`` (the retrieval)."""
    body = _object(payload, provider)
    summary = body.get("quoteSummary")
    if not isinstance(summary, dict):
        raise ProviderParseError(provider, "no quoteSummary in payload")
    error = _error_object(body, "quoteSummary")
    if error is not None:
        code, description = error
        if code == "Not Found":
            raise ProviderSymbolNotFound(provider, f"Yahoo: {description or code}")
        raise ProviderUnavailable(provider, f"Yahoo quoteSummary error: {description or code}")
    results = summary.get("result")
    if not isinstance(results, list):
        raise ProviderParseError(provider, "quoteSummary.result is not a list")
    if not results:
        raise ProviderSymbolNotFound(provider, f"Yahoo has no profile for {symbol}")
    result = results[0]
    if not isinstance(result, dict):
        raise ProviderParseError(provider, "quoteSummary.result[0] is not an object")
    profile = result.get("assetProfile") or result.get("summaryProfile")
    price = result.get("price")
    profile = profile if isinstance(profile, dict) else {}
    price = price if isinstance(price, dict) else {}
    if not profile and not price:
        raise ProviderNoData(provider, f"Yahoo's quoteSummary for {symbol} holds neither profile nor price")
    employees = _integer(profile, "fullTimeEmployees")
    try:
        return CompanyProfile(
            symbol=symbol,
            name=_text(price, "longName", "shortName"),
            exchange=_text(price, "exchangeName", "exchange"),
            currency=_text(price, "currency"),
            sector=_text(profile, "sector", "sectorDisp"),
            industry=_text(profile, "industry", "industryDisp"),
            country=_text(profile, "country"),
            website=_text(profile, "website"),
            description=_text(profile, "longBusinessSummary"),
            employees=employees if employees is not None and employees >= 0 else None,
            market_cap=_integer(price, "marketCap"),
            as_of=_epoch(price.get("regularMarketTime")) or now,
        )
    except ValidationError as exc:
        raise ProviderParseError(provider, f"unexpected profile for {symbol!r}: {exc.errors()[0]['msg']}") from exc


def _search_body(payload: object, provider: str) -> dict[str, Any]:
    body = _object(payload, provider)
    error = _error_object(body, "finance")
    if error is not None:
        code, description = error
        raise ProviderUnsupported(provider, f"Yahoo refused the search: {description or code}")
    return body


def parse_search_response(payload: object, provider: str, limit: int) -> list[SearchResult]:
    """v1 search ``quotes[]`` onto SearchResult. Entries without a symbol (Yahoo mixes in Crunchbase
    companies with ``isYahooFinance: false``) are not instruments and are left out."""
    body = _search_body(payload, provider)
    items = body.get("quotes", [])
    if not isinstance(items, list):
        raise ProviderParseError(provider, "search quotes is not a list")
    results: list[SearchResult] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("symbol"), str) or not item["symbol"]:
            continue
        asset_type = _text(item, "quoteType", "typeDisp")
        results.append(
            SearchResult(
                symbol=item["symbol"],
                name=_text(item, "longname", "shortname"),
                exchange=_text(item, "exchDisp", "exchange"),
                asset_type=asset_type.lower() if asset_type else None,
                sector=_text(item, "sector", "sectorDisp"),
            )
        )
    return results[:limit]


def parse_news_response(payload: object, provider: str, limit: int) -> list[NewsArticle]:
    """v1 search ``news[]`` onto NewsArticle (Yahoo gives no summary and no sentiment). Items without a
    title, a link or a publish time are left out."""
    body = _search_body(payload, provider)
    items = body.get("news", [])
    if not isinstance(items, list):
        raise ProviderParseError(provider, "search news is not a list")
    articles: list[NewsArticle] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        title, link = _text(item, "title"), _text(item, "link")
        published = _epoch(item.get("providerPublishTime"))
        if title is None or link is None or published is None:
            continue
        related = item.get("relatedTickers")
        articles.append(
            NewsArticle(
                title=title,
                url=link,
                publisher=_text(item, "publisher"),
                published_at=published,
                summary=None,
                symbols=[t for t in related if isinstance(t, str)] if isinstance(related, list) else [],
                sentiment_score=None,
            )
        )
    return articles[:limit]


def parse_movers_response(payload: object, provider: str, limit: int, *, now: datetime) -> list[Quote]:
    """Predefined screener: ``finance.result[0].quotes[]`` are v7 quote objects, in Yahoo's order."""
    body = _object(payload, provider)
    finance = body.get("finance")
    if not isinstance(finance, dict):
        raise ProviderParseError(provider, "no finance in screener payload")
    error = _error_object(body, "finance")
    if error is not None:
        code, description = error
        raise ProviderUnavailable(provider, f"Yahoo screener error: {description or code}")
    results = finance.get("result")
    if not isinstance(results, list):
        raise ProviderParseError(provider, "screener result is not a list")
    if not results:
        return []
    first = results[0]
    items = first.get("quotes") if isinstance(first, dict) else None
    if not isinstance(items, list):
        raise ProviderParseError(provider, "screener result[0].quotes is not a list")
    movers: list[Quote] = []
    for item in items:
        if not isinstance(item, dict):
            raise ProviderParseError(provider, "screener quote is not an object")
        quote = quote_from_item(item, provider, now=now)
        if quote is not None:
            movers.append(quote)
    return movers[:limit]


# --- the provider ---------------------------------------------------------------------------------

# Classifies an HTTP error answer: (status, body) → a typed error, or None for the generic mapping.
ErrorClassifier = Callable[[int, Mapping[str, Any]], ProviderError | None]


class YahooProvider(BaseProvider):
    """Yahoo Finance via yfinance, over an injected requests session."""

    vendor_name = "yahoo"
    supported = frozenset(
        {
            DataKind.QUOTE,
            DataKind.INDICES,
            DataKind.SECTORS,
            DataKind.HISTORICAL,
            DataKind.PROFILE,
            DataKind.SEARCH,
            DataKind.NEWS,
            DataKind.MOVERS,
        }
    )
    quote_batch_size = MAX_SYMBOLS_PER_QUOTE_REQUEST

    def __init__(
        self,
        session: requests.Session,
        *,
        cache_dir: str,
        source_label: str = "yahoo",
        base_url: str = DEFAULT_BASE_URL,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(session, source_label=source_label)
        self._cache_dir = cache_dir
        self._base_url = base_url.rstrip("/")
        self._clock = clock

    def get_quotes(self, symbols: Sequence[str], *, timeout_seconds: float) -> dict[str, Quote]:
        request = build_quote_request(symbols)
        payload = self._fetch_json(request, timeout_seconds)
        return parse_quote_response(payload, self._label, now=self._clock(), requested=symbols)

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, timeout_seconds: float
    ) -> HistoricalData:
        try:
            request = build_historical_request(symbol, period, interval, now=self._clock(), base_url=self._base_url)
        except ProviderUnsupported as exc:
            raise ProviderUnsupported(self._label, exc.message.removeprefix("yahoo: ")) from None
        payload = self._fetch_json(request, timeout_seconds, classify=self._chart_http_error)
        return parse_historical_response(payload, self._label, symbol=symbol, period=period, interval=interval)

    def get_profile(self, symbol: str, *, timeout_seconds: float) -> CompanyProfile:
        request = build_profile_request(symbol, base_url=self._base_url)
        payload = self._fetch_json(request, timeout_seconds, classify=self._quote_summary_http_error)
        return parse_profile_response(payload, self._label, symbol=symbol, now=self._clock())

    def search(self, query: str, limit: int, *, timeout_seconds: float) -> list[SearchResult]:
        try:
            request = build_search_request(query, limit, base_url=self._base_url)
        except ValueError as exc:
            raise ProviderUnsupported(self._label, str(exc)) from None
        payload = self._fetch_json(request, timeout_seconds, classify=self._finance_http_error)
        return parse_search_response(payload, self._label, limit)

    def get_news(self, symbol: str, limit: int, *, timeout_seconds: float) -> list[NewsArticle]:
        try:
            request = build_news_request(symbol, limit, base_url=self._base_url)
        except ValueError as exc:
            raise ProviderUnsupported(self._label, str(exc)) from None
        payload = self._fetch_json(request, timeout_seconds, classify=self._finance_http_error)
        return parse_news_response(payload, self._label, limit)

    def get_movers(self, mover_type: MoverType, limit: int, *, timeout_seconds: float) -> list[Quote]:
        try:
            request = build_movers_request(mover_type, limit, base_url=self._base_url)
        except ValueError as exc:
            raise ProviderUnsupported(self._label, str(exc)) from None
        payload = self._fetch_json(request, timeout_seconds)
        return parse_movers_response(payload, self._label, limit, now=self._clock())

    # --- fetch ------------------------------------------------------------------------------------

    def _chart_http_error(self, status: int, body: Mapping[str, Any]) -> ProviderError | None:
        error = _error_object(body, "chart")
        if error is None or status not in (400, 404, 422):
            return None
        return chart_error(status, *error, self._label)

    def _quote_summary_http_error(self, status: int, body: Mapping[str, Any]) -> ProviderError | None:
        error = _error_object(body, "quoteSummary")
        if error is None or status != 404:
            return None
        return ProviderSymbolNotFound(self._label, f"Yahoo: {error[1] or error[0]}")

    def _finance_http_error(self, status: int, body: Mapping[str, Any]) -> ProviderError | None:
        error = _error_object(body, "finance")
        if error is None or status != 400:
            return None
        return ProviderUnsupported(self._label, f"Yahoo refused the request: {error[1] or error[0]}")

    def _fetch_json(
        self, request: ProviderRequest, timeout_seconds: float, *, classify: ErrorClassifier | None = None
    ) -> object:
        load_yfinance(self._cache_dir)
        from yfinance.data import YfData  # imported here, not at module level: cold start
        from yfinance.exceptions import YFException, YFRateLimitError

        # YfData is yfinance's per-process singleton; passing the session (re)binds it to ours.
        data = YfData(session=self._session)
        try:
            return data.get_raw_json(request.url, params=dict(request.params), timeout=timeout_seconds)
        except ResponseCut as exc:
            raise ProviderResponseCut(self._label, f"response cut ({type(exc).__name__})") from exc
        except requests.Timeout as exc:
            raise ProviderTimeout(self._label, f"no answer within {timeout_seconds:.1f}s") from exc
        except requests.HTTPError as exc:
            raise self._http_error(exc, classify) from exc
        except requests.JSONDecodeError as exc:
            raise ProviderParseError(self._label, "response is not JSON") from exc
        except requests.RequestException as exc:
            raise ProviderUnavailable(self._label, f"network error: {type(exc).__name__}") from exc
        except YFRateLimitError as exc:
            raise ProviderRateLimited(self._label, "rate limited by Yahoo") from exc
        except YFException as exc:
            raise ProviderUnavailable(self._label, f"yfinance: {str(exc)[:200]}") from exc

    def _http_error(self, exc: requests.HTTPError, classify: ErrorClassifier | None = None) -> ProviderError:
        response = exc.response
        status = response.status_code if response is not None else 0
        if status == 429:
            retry_after = response.headers.get("Retry-After", "") if response is not None else ""
            return ProviderRateLimited(
                self._label, "HTTP 429", retry_after_seconds=int(retry_after) if retry_after.isdigit() else None
            )
        text = response.text if response is not None else ""
        if classify is not None:
            body = _json_object(text)
            typed = classify(status, body) if body is not None else None
            if typed is not None:
                return typed
        detail = yahoo_error_description(text)
        message = f"HTTP {status}" + (f": {detail}" if detail else "")
        if status == 403:
            return ProviderAuthError(self._label, message)
        return ProviderUnavailable(self._label, message)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        payload = json.loads(text)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def yahoo_error_description(body: str) -> str | None:
    """Yahoo's error object ({"<envelope>": {"error": {"code", "description"}}}) from an error body, if any."""
    payload = _json_object(body)
    if payload is None:
        return None
    if isinstance(payload.get("error"), str):  # a plain {"error": "..."} (the replay source's own answers)
        return str(payload["error"])[:200]
    for envelope in payload.values():
        error = envelope.get("error") if isinstance(envelope, dict) else None
        if isinstance(error, dict) and error.get("description"):
            return str(error["description"])[:200]
    return None
