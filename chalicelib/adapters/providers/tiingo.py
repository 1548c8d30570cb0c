"""Tiingo (https://api.tiingo.com) over plain REST.

The three steps of every provider, per data kind: ``build_<kind>_request`` (pure: a ProviderRequest
without the key), the fetch (``BaseProvider._get_json``, the only network I/O, always with a timeout),
``parse_<kind>_response`` (pure: the vendor payload onto the standard models, vendor quirks onto
typed ProviderErrors). Mapped against the genuine recordings in tests/fixtures/providers/tiingo/.

Endpoints used (one request per public method):
- quote: ``/tiingo/daily/{ticker}/prices?startDate=<today-14d>``. Tiingo's IEX top-of-book has no
  genuine recording to test against, so the quote is end-of-day: the last daily bar's close, with the
  bar before as the previous close. ``as_of`` is that bar's session close (16:00 New York), never
  the retrieval time.
- historical: ``/tiingo/daily/{ticker}/prices`` with ``resampleFreq=daily|weekly|monthly``;
  intraday from ``/iex/{ticker}/prices`` with ``resampleFreq=1min|5min|15min|30min|1hour``.
- profile: ``/tiingo/daily/{ticker}`` (meta); news: ``/tiingo/news``; search: ``/tiingo/utilities/search``.

Auth: the key travels only in the ``Authorization: Token <key>`` header, attached at fetch time (the
built requests never hold it, and the header value's repr is redacted). It is never in a URL, a log
line or an error message; as a last guard any error text that would contain it is scrubbed.

Bar timestamps follow the standard model (the bar's open, UTC): Tiingo dates daily bars at midnight
UTC of the session date, so a daily bar is stamped at that session's 09:30 New York open; Tiingo
labels weekly bars by the week's Friday and monthly bars by the month's last business day, so those
are stamped at the open of the period's first weekday (Yahoo's convention), the values unchanged.
Intraday (IEX) bars already carry their start time in UTC.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import quote as url_quote
from zoneinfo import ZoneInfo

import requests
from pydantic import ValidationError

from chalicelib.adapters.providers.base import BaseProvider, JsonReply, ProviderRequest
from chalicelib.errors import (
    ProviderError,
    ProviderNoData,
    ProviderParseError,
    ProviderSymbolNotFound,
    ProviderUnsupported,
)
from chalicelib.models.market import (
    CompanyProfile,
    DataKind,
    HistoricalData,
    Interval,
    NewsArticle,
    Period,
    PriceBar,
    Quote,
    SearchResult,
)

TIINGO_BASE_URL = "https://api.tiingo.com"
NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = time(9, 30)
SESSION_CLOSE = time(16, 0)

# The quote reads the last two daily bars out of a two-week window (long weekends, holidays).
QUOTE_LOOKBACK_DAYS = 14

DAILY_FREQUENCIES: Mapping[Interval, str] = {
    Interval.D1: "daily",
    Interval.WK1: "weekly",
    Interval.MO1: "monthly",
}
# IEX intraday bars. Tiingo documents resampleFreq as "# + (min/hour)" with a minimum of "1min"
# (quoted in pandas-datareader's TiingoIEXHistoricalReader and riingo's riingo_iex_prices docs).
INTRADAY_FREQUENCIES: Mapping[Interval, str] = {
    Interval.M1: "1min",
    Interval.M5: "5min",
    Interval.M15: "15min",
    Interval.M30: "30min",
    Interval.H1: "1hour",
}
# The IEX feed returns at most the most recent 2000 bars at the chosen frequency (riingo documents
# this; not verified against a live account). At 6.5 h a session that is ~5 sessions of 1min bars,
# ~25 of 5min, ~77 of 15min, ~153 of 30min, ~285 of 1hour: longer periods would come back silently
# truncated, so they are declined (ProviderUnsupported) and the chain asks someone else.
INTRADAY_PERIODS: Mapping[Interval, frozenset[Period]] = {
    Interval.M1: frozenset({Period.D1, Period.D5}),
    Interval.M5: frozenset({Period.D1, Period.D5, Period.MO1}),
    Interval.M15: frozenset({Period.D1, Period.D5, Period.MO1, Period.MO3}),
    Interval.M30: frozenset({Period.D1, Period.D5, Period.MO1, Period.MO3, Period.MO6}),
    Interval.H1: frozenset({Period.D1, Period.D5, Period.MO1, Period.MO3, Period.MO6, Period.Y1, Period.YTD}),
}
# "1d"/"5d" mean the last 1 / 5 sessions (as Yahoo reads them), not calendar days: ask for a window
# that surely holds them and keep the newest sessions (daily and intraday bars).
SESSION_PERIODS: Mapping[Period, int] = {Period.D1: 1, Period.D5: 5}
SESSION_WINDOW_DAYS = 10
PERIOD_MONTHS: Mapping[Period, int] = {
    Period.MO1: 1,
    Period.MO3: 3,
    Period.MO6: 6,
    Period.Y1: 12,
    Period.Y2: 24,
    Period.Y5: 60,
    Period.Y10: 120,
}
# "max": a start before any US listing; Tiingo answers from the first bar it holds.
MAX_START = date(1900, 1, 1)

# Tiingo's assetType spellings onto the standard lower-case types (as Yahoo's quoteType lower-cased).
ASSET_TYPES: Mapping[str, str] = {"stock": "equity", "etf": "etf", "mutual fund": "mutualfund"}

_NULL_STRINGS = frozenset({"", "none", "null", "-", "n/a", "nan"})


class _RedactedToken(str):
    """The Authorization header value: a str to requests, but its repr (dataclass/dict reprs, debug
    output) never shows the key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'Token <redacted>'"


# --- build (pure) -----------------------------------------------------------------------------------


def _ticker_path(symbol: str) -> str:
    # Symbols are validated upstream; quoting keeps the path one segment whatever arrives.
    return url_quote(symbol, safe="")


def _headers() -> dict[str, str]:
    return {"Accept": "application/json"}


def new_york_today(now: datetime) -> date:
    """The exchange's calendar date at ``now`` (Tiingo's dates are New York session dates)."""
    return now.astimezone(NEW_YORK).date()


def build_quote_request(symbol: str, *, today: date, base_url: str = TIINGO_BASE_URL) -> ProviderRequest:
    start = today - timedelta(days=QUOTE_LOOKBACK_DAYS)
    return ProviderRequest(
        url=f"{base_url}/tiingo/daily/{_ticker_path(symbol)}/prices",
        params={"startDate": start.isoformat()},
        headers=_headers(),
    )


def _shift_months(day: date, months: int) -> date:
    index = day.year * 12 + (day.month - 1) - months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def history_start(period: Period, today: date) -> date:
    if period in SESSION_PERIODS:
        return today - timedelta(days=SESSION_WINDOW_DAYS)
    if period is Period.YTD:
        return date(today.year, 1, 1)
    if period is Period.MAX:
        return MAX_START
    return _shift_months(today, PERIOD_MONTHS[period])


def build_historical_request(
    symbol: str, period: Period, interval: Interval, *, today: date, base_url: str = TIINGO_BASE_URL
) -> ProviderRequest:
    """Raises ProviderUnsupported (vendor ``tiingo``) for an interval/period Tiingo cannot serve whole."""
    if interval in DAILY_FREQUENCIES:
        path, frequency = f"/tiingo/daily/{_ticker_path(symbol)}/prices", DAILY_FREQUENCIES[interval]
    elif interval in INTRADAY_FREQUENCIES:
        if period not in INTRADAY_PERIODS[interval]:
            raise ProviderUnsupported(
                "tiingo", f"{interval.value} bars only cover the last 2000 bars; period {period.value} is too long"
            )
        path, frequency = f"/iex/{_ticker_path(symbol)}/prices", INTRADAY_FREQUENCIES[interval]
    else:  # pragma: no cover - every Interval is mapped above
        raise ProviderUnsupported("tiingo", f"interval {interval.value} is not offered")
    return ProviderRequest(
        url=f"{base_url}{path}",
        params={
            "startDate": history_start(period, today).isoformat(),
            "endDate": today.isoformat(),
            "resampleFreq": frequency,
        },
        headers=_headers(),
    )


def build_profile_request(symbol: str, *, base_url: str = TIINGO_BASE_URL) -> ProviderRequest:
    return ProviderRequest(url=f"{base_url}/tiingo/daily/{_ticker_path(symbol)}", params={}, headers=_headers())


def build_news_request(symbol: str, limit: int, *, base_url: str = TIINGO_BASE_URL) -> ProviderRequest:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/tiingo/news",
        # Tiingo spells tickers lower-case in news (recordings: tickers=aapl).
        params={"tickers": symbol.lower(), "limit": str(limit), "sortBy": "publishedDate"},
        headers=_headers(),
    )


def build_search_request(query: str, limit: int, *, base_url: str = TIINGO_BASE_URL) -> ProviderRequest:
    text = query.strip()
    if not text:
        raise ValueError("query must not be empty")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/tiingo/utilities/search",
        params={"query": text, "limit": str(limit)},
        headers=_headers(),
    )


# --- parse (pure) -----------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    """A JSON number, or a numeric string ("12.5", "-0.58%"); null-ish strings and anything else: None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _NULL_STRINGS:
            return None
        try:
            return float(text.removesuffix("%").replace(",", ""))
        except ValueError:
            return None
    return None


def _integer(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return None if text.lower() in _NULL_STRINGS else text


def parse_timestamp(value: object, provider: str) -> datetime:
    """Tiingo's ISO timestamps, with ``Z`` or ``+00:00`` (older recordings) or none (read as UTC)."""
    if not isinstance(value, str):
        raise ProviderParseError(provider, f"expected an ISO date string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise ProviderParseError(provider, f"unreadable date {value[:40]!r}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _session_date(value: object, provider: str) -> date:
    """The calendar date a daily bar belongs to (Tiingo stamps it at midnight UTC of that date)."""
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return date.fromisoformat(value.strip())
        except ValueError as exc:
            raise ProviderParseError(provider, f"unreadable date {value[:40]!r}") from exc
    return parse_timestamp(value, provider).date()


def _at_new_york(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=NEW_YORK).astimezone(UTC)


def _period_start(day: date, interval: Interval) -> date:
    if interval is Interval.WK1:
        return day - timedelta(days=day.weekday())
    if interval is Interval.MO1:
        first = day.replace(day=1)
        # Saturday or Sunday: the month's first weekday is the following Monday.
        return first + timedelta(days=7 - first.weekday()) if first.weekday() >= 5 else first
    return day


def not_found_detail(reply: JsonReply, provider: str) -> str | None:
    """Tiingo's unknown-ticker answer is HTTP 404 with ``{"detail": "..."}``: its text, or None when the
    reply is not a 404. A 404 without that shape is not a verdict on the symbol."""
    if reply.status != 404:
        return None
    payload = reply.payload
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        return " ".join(str(payload["detail"]).split())[:200]
    raise ProviderParseError(provider, "HTTP 404 without Tiingo's detail message")


def _expect_list(payload: object, provider: str, what: str) -> list[Any]:
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get("detail"), str):
        raise ProviderParseError(provider, f"{what}: Tiingo said {payload['detail'][:160]!r} instead of data")
    raise ProviderParseError(provider, f"{what}: expected a JSON array, got {type(payload).__name__}")


def _daily_rows(payload: object, provider: str) -> list[tuple[date, float, dict[str, Any]]]:
    """(session date, close, bar) for every bar with a close, oldest first."""
    rows: list[tuple[date, float, dict[str, Any]]] = []
    for item in _expect_list(payload, provider, "daily prices"):
        if not isinstance(item, dict):
            raise ProviderParseError(provider, "daily prices: a bar is not a JSON object")
        close = _number(item.get("close"))
        if close is not None:
            rows.append((_session_date(item.get("date"), provider), close, item))
    rows.sort(key=lambda row: row[0])
    return rows


def parse_quote_response(payload: object, provider: str, symbol: str) -> dict[str, Quote]:
    """An end-of-day quote from the daily bars; an empty array (nothing recent) gives no quote."""
    rows = _daily_rows(payload, provider)
    if not rows:
        return {}
    day, price, last = rows[-1]
    previous_close: float | None = None
    if len(rows) > 1:
        previous_close = rows[-2][1]
        # A split effective on the last session (splitFactor != 1) makes the raw previous close
        # incomparable; put it on the new share basis, as quote feeds do.
        split = _number(last.get("splitFactor"))
        if split is not None and split not in (0.0, 1.0):
            previous_close = previous_close / split
    change = price - previous_close if previous_close is not None else None
    change_percent = change / previous_close * 100 if change is not None and previous_close else None
    try:
        quote = Quote(
            symbol=symbol,
            price=price,
            change=change,
            change_percent=change_percent,
            volume=_integer(last.get("volume")),
            previous_close=previous_close,
            open=_number(last.get("open")),
            day_high=_number(last.get("high")),
            day_low=_number(last.get("low")),
            # End-of-day data: the bar's date is a New York session, and its close is final at 16:00
            # America/New_York; that instant (in UTC) is when this price was current.
            as_of=_at_new_york(day, SESSION_CLOSE),
        )
    except ValidationError as exc:
        raise ProviderParseError(provider, f"unexpected quote for {symbol!r}: {exc.errors()[0]['msg']}") from exc
    return {quote.symbol: quote}


def _keep_last_sessions(bars: list[PriceBar], sessions: int) -> list[PriceBar]:
    dates = sorted({bar.timestamp.astimezone(NEW_YORK).date() for bar in bars})
    keep = set(dates[-sessions:])
    return [bar for bar in bars if bar.timestamp.astimezone(NEW_YORK).date() in keep]


def parse_historical_response(
    payload: object, provider: str, symbol: str, period: Period, interval: Interval
) -> HistoricalData:
    """Daily/weekly/monthly (``/tiingo/daily/.../prices``) or IEX intraday (``/iex/.../prices``) bars."""
    items = _expect_list(payload, provider, "prices")
    bars: list[PriceBar] = []
    intraday = interval in INTRADAY_FREQUENCIES
    for item in items:
        if not isinstance(item, dict):
            raise ProviderParseError(provider, "prices: a bar is not a JSON object")
        close = _number(item.get("close"))
        if close is None:
            continue
        if intraday:
            stamp = parse_timestamp(item.get("date"), provider)
        else:
            day = _period_start(_session_date(item.get("date"), provider), interval)
            stamp = _at_new_york(day, SESSION_OPEN)
        try:
            bars.append(
                PriceBar(
                    timestamp=stamp,
                    open=_number(item.get("open")),
                    high=_number(item.get("high")),
                    low=_number(item.get("low")),
                    close=close,
                    # IEX bars carry no adjClose and (unless asked via `columns`) no volume: None.
                    adj_close=_number(item.get("adjClose")),
                    volume=_integer(item.get("volume")),
                )
            )
        except ValidationError as exc:
            raise ProviderParseError(provider, f"unexpected bar for {symbol!r}: {exc.errors()[0]['msg']}") from exc
    bars.sort(key=lambda bar: bar.timestamp)
    if period in SESSION_PERIODS and (intraday or interval is Interval.D1):
        bars = _keep_last_sessions(bars, SESSION_PERIODS[period])
    if not bars:
        raise ProviderNoData(provider, f"no {interval.value} bars for {symbol} over {period.value}")
    return HistoricalData(symbol=symbol, period=period, interval=interval, bars=bars, as_of=bars[-1].timestamp)


def parse_profile_response(payload: object, provider: str, symbol: str, *, now: datetime) -> CompanyProfile:
    """``/tiingo/daily/{ticker}`` meta. ``as_of`` is the meta's ``endDate`` (its last price date, at the
    session close); a ticker without one is dated ``now`` (when it was fetched)."""
    if not isinstance(payload, dict):
        raise ProviderParseError(provider, f"meta: expected a JSON object, got {type(payload).__name__}")
    if "ticker" not in payload and isinstance(payload.get("detail"), str):
        raise ProviderParseError(provider, f"meta: Tiingo said {payload['detail'][:160]!r} instead of data")
    end = payload.get("endDate")
    as_of = _at_new_york(_session_date(end, provider), SESSION_CLOSE) if _text(end) else now
    try:
        return CompanyProfile(
            symbol=symbol,
            name=_text(payload.get("name")),
            exchange=_text(payload.get("exchangeCode")),
            description=_text(payload.get("description")),
            as_of=as_of,
        )
    except ValidationError as exc:
        raise ProviderParseError(provider, f"unexpected meta for {symbol!r}: {exc.errors()[0]['msg']}") from exc


def parse_news_response(payload: object, provider: str, limit: int) -> list[NewsArticle]:
    """``/tiingo/news`` items, newest first as asked. Tiingo news has no sentiment score: None.
    Items without a title or URL cannot be served and are skipped."""
    articles: list[NewsArticle] = []
    for item in _expect_list(payload, provider, "news"):
        if not isinstance(item, dict):
            raise ProviderParseError(provider, "news: an item is not a JSON object")
        title, url = _text(item.get("title")), _text(item.get("url"))
        if title is None or url is None:
            continue
        tickers = item.get("tickers")
        symbols = (
            [t.strip().upper() for t in tickers if isinstance(t, str) and t.strip()]
            if isinstance(tickers, list)
            else []
        )
        try:
            articles.append(
                NewsArticle(
                    title=title,
                    url=url,
                    publisher=_text(item.get("source")),
                    published_at=parse_timestamp(item.get("publishedDate"), provider),
                    summary=_text(item.get("description")),
                    symbols=symbols,
                    sentiment_score=None,
                )
            )
        except ValidationError as exc:
            raise ProviderParseError(provider, f"unexpected news item: {exc.errors()[0]['msg']}") from exc
    return articles[:limit]


def parse_search_response(payload: object, provider: str, limit: int) -> list[SearchResult]:
    """``/tiingo/utilities/search`` items (ticker, name, assetType, isActive, ...). Inactive (delisted)
    tickers are left out: nothing can be quoted for them."""
    results: list[SearchResult] = []
    for item in _expect_list(payload, provider, "search"):
        if not isinstance(item, dict):
            raise ProviderParseError(provider, "search: an item is not a JSON object")
        ticker = _text(item.get("ticker"))
        if ticker is None or item.get("isActive") is False:
            continue
        asset_type = _text(item.get("assetType"))
        results.append(
            SearchResult(
                symbol=ticker.upper(),
                name=_text(item.get("name")),
                asset_type=ASSET_TYPES.get(asset_type.lower(), asset_type.lower()) if asset_type else None,
            )
        )
    return results[:limit]


# --- the adapter ------------------------------------------------------------------------------------


def _is_index_like(symbol: str) -> bool:
    """Yahoo-style index (^GSPC) and currency/future (EURUSD=X, GC=F) symbols: Tiingo has no such tickers."""
    return symbol.startswith("^") or "=" in symbol


class TiingoProvider(BaseProvider):
    """Tiingo REST: end-of-day quotes, daily/weekly/monthly and IEX intraday history, meta, news, search."""

    vendor_name = "tiingo"
    supported = frozenset({DataKind.QUOTE, DataKind.HISTORICAL, DataKind.PROFILE, DataKind.NEWS, DataKind.SEARCH})
    # No multi-ticker daily endpoint: one symbol per quote call.
    quote_batch_size = 1

    def __init__(
        self,
        session: requests.Session,
        *,
        api_key: str,
        base_url: str = TIINGO_BASE_URL,
        source_label: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(session, source_label=source_label)
        if not api_key:
            raise ValueError("a Tiingo API key is required")
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._clock = clock

    def __repr__(self) -> str:
        return f"TiingoProvider(base_url={self._base_url!r}, source_label={self._label!r})"

    # --- fetch ------------------------------------------------------------------------------------

    def _fetch(self, request: ProviderRequest, timeout_seconds: float, *, symbol_call: bool) -> JsonReply:
        """The one upstream call. Per-symbol calls let 404 through (Tiingo's unknown-ticker answer)."""
        authorized = replace(
            request, headers={**(request.headers or {}), "Authorization": _RedactedToken(f"Token {self._api_key}")}
        )
        try:
            return self._get_json(
                authorized,
                timeout_seconds=timeout_seconds,
                passthrough_statuses=frozenset({404}) if symbol_call else frozenset(),
            )
        except ProviderError as exc:
            if self._api_key not in exc.message:
                raise
            leaked = exc
        # Only if an error body echoed the key: the same error type with the key cut out, raised outside
        # the except block so that neither __cause__ nor __context__ keeps the original text.
        message = leaked.message.removeprefix(f"{leaked.provider}: ").replace(self._api_key, "<redacted>")
        raise type(leaked)(leaked.provider, message, retry_after_seconds=leaked.retry_after_seconds) from None

    def _today(self) -> date:
        return new_york_today(self._clock())

    # --- data kinds -------------------------------------------------------------------------------

    def get_quotes(self, symbols: Sequence[str], *, timeout_seconds: float) -> dict[str, Quote]:
        if not symbols:
            return {}
        if len(symbols) > self.quote_batch_size:
            raise ValueError(f"Tiingo quotes one symbol per call, got {len(symbols)}")
        symbol = symbols[0]
        if _is_index_like(symbol):
            return {}  # no such ticker at Tiingo; asking would only spend quota
        request = build_quote_request(symbol, today=self._today(), base_url=self._base_url)
        reply = self._fetch(request, timeout_seconds, symbol_call=True)
        if not_found_detail(reply, self._label) is not None:
            return {}  # unknown symbols are absent, never an error
        return parse_quote_response(reply.payload, self._label, symbol)

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, timeout_seconds: float
    ) -> HistoricalData:
        if _is_index_like(symbol):
            raise ProviderUnsupported(self._label, "indices, currencies and futures are not offered")
        try:
            request = build_historical_request(symbol, period, interval, today=self._today(), base_url=self._base_url)
        except ProviderUnsupported as exc:
            raise ProviderUnsupported(self._label, exc.message.removeprefix("tiingo: ")) from None
        reply = self._fetch(request, timeout_seconds, symbol_call=True)
        self._raise_if_unknown(reply, symbol)
        return parse_historical_response(reply.payload, self._label, symbol, period, interval)

    def get_profile(self, symbol: str, *, timeout_seconds: float) -> CompanyProfile:
        if _is_index_like(symbol):
            raise ProviderUnsupported(self._label, "indices, currencies and futures are not offered")
        reply = self._fetch(build_profile_request(symbol, base_url=self._base_url), timeout_seconds, symbol_call=True)
        self._raise_if_unknown(reply, symbol)
        return parse_profile_response(reply.payload, self._label, symbol, now=self._clock())

    def get_news(self, symbol: str, limit: int, *, timeout_seconds: float) -> list[NewsArticle]:
        request = build_news_request(symbol, limit, base_url=self._base_url)
        reply = self._fetch(request, timeout_seconds, symbol_call=False)
        return parse_news_response(reply.payload, self._label, limit)

    def search(self, query: str, limit: int, *, timeout_seconds: float) -> list[SearchResult]:
        request = build_search_request(query, limit, base_url=self._base_url)
        reply = self._fetch(request, timeout_seconds, symbol_call=False)
        return parse_search_response(reply.payload, self._label, limit)

    def _raise_if_unknown(self, reply: JsonReply, symbol: str) -> None:
        detail = not_found_detail(reply, self._label)
        if detail is not None:
            raise ProviderSymbolNotFound(self._label, f"{symbol} is unknown to Tiingo ({detail})")
