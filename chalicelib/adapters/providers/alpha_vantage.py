"""Alpha Vantage (https://www.alphavantage.co/query?function=...) over REST with ``requests``.

The three steps of every provider, per data kind: ``build_<kind>_request`` (pure; the request carries
no key), one fetch through ``BaseProvider._get_json`` (the key is added just before it, in ``_call``), and
``parse_<kind>_response`` (pure; maps the vendor payload onto the standard models or raises a typed
ProviderError). Each public method makes at most one upstream request.

Alpha Vantage quirks handled here (see tests/fixtures/providers/alpha_vantage/README.md):

* Every value is a string behind a numbered key (``"05. price": "112.1300"``,
  ``"10. change percent": "-0.5852%"``); fields are looked up by the name after the number, so
  ``"5. volume"`` (daily) and ``"6. volume"`` (daily adjusted) both work.
* Errors arrive as HTTP 200 bodies: ``{"Note": ...}`` (old throttle wording) and ``{"Information": ...}``
  (2024+ throttle wording, and "premium endpoint" refusals), ``{"Error Message": "Invalid API call. ..."}``
  (what Alpha Vantage answers for an unknown ticker on symbol calls), ``{"Global Quote": {}}`` and ``{}``
  (unknown symbol).
* The key travels in the ``apikey`` query parameter. It is added to the request only inside
  ``AlphaVantageProvider._call``; errors raised from there are rebuilt without their chained requests
  exception (whose text can hold the full URL) and with any echo of the key replaced.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from pydantic import ValidationError

from chalicelib.adapters.providers.base import BaseProvider, ProviderRequest
from chalicelib.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNoData,
    ProviderParseError,
    ProviderRateLimited,
    ProviderSymbolNotFound,
    ProviderUnavailable,
    ProviderUnsupported,
    ValidationFailed,
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
    normalize_symbol,
)

_T = TypeVar("_T")

VENDOR = "alpha_vantage"
BASE_URL = "https://www.alphavantage.co/query"

# Alpha Vantage covers US markets and names US/Eastern in its metadata; tzdata knows that name only as a
# backward-compatible link, so it is resolved to the canonical zone first.
NEW_YORK = ZoneInfo("America/New_York")
_ZONE_ALIASES = {"US/Eastern": "America/New_York"}
SESSION_OPEN = time(9, 30)
SESSION_CLOSE = time(16, 0)

# outputsize=compact returns the latest 100 data points; full returns the whole history.
COMPACT_POINTS = 100
# Intraday bars per session, counting extended hours (04:00-20:00 New York), which Alpha Vantage
# includes by default: enough to decide compact vs full without undercounting.
_INTRADAY_MINUTES_PER_SESSION = 16 * 60
# Calendar days that hold ~100 trading days (100 * 7/5 = 140), minus a margin for holidays.
_COMPACT_CALENDAR_DAYS = 135

_INTRADAY_INTERVALS: Mapping[Interval, int] = {
    Interval.M1: 1,
    Interval.M5: 5,
    Interval.M15: 15,
    Interval.M30: 30,
    Interval.H1: 60,
}
_INTRADAY_PERIODS = frozenset({Period.D1, Period.D5})
_SERIES_FUNCTIONS: Mapping[Interval, str] = {
    Interval.D1: "TIME_SERIES_DAILY",
    Interval.WK1: "TIME_SERIES_WEEKLY",
    Interval.MO1: "TIME_SERIES_MONTHLY",
}
# Periods measured in sessions: (sessions kept, calendar days looked back from now). The look-back
# covers weekends and holidays, so "1d" on a Saturday is Friday's session, while a payload whose newest
# bar is weeks old yields no bars instead of a stale "last session".
_SESSION_PERIODS: Mapping[Period, tuple[int, int]] = {Period.D1: (1, 5), Period.D5: (5, 10)}
_PERIOD_MONTHS: Mapping[Period, int] = {
    Period.MO1: 1,
    Period.MO3: 3,
    Period.MO6: 6,
    Period.Y1: 12,
    Period.Y2: 24,
    Period.Y5: 60,
    Period.Y10: 120,
}
_MOVER_KEYS: Mapping[MoverType, str] = {
    MoverType.GAINERS: "top_gainers",
    MoverType.LOSERS: "top_losers",
    MoverType.ACTIVES: "most_actively_traded",
}
NEWS_MAX_LIMIT = 1000  # Alpha Vantage's documented maximum for NEWS_SENTIMENT's limit

_NULL_STRINGS = frozenset({"", "none", "-", "n/a", "null"})
# Throttle wording, old and new: "...API call frequency is 5 calls per minute and 500 calls per day...",
# "...standard API rate limit is 25 requests per day...", "...spreading out your free API requests more
# sparingly (1 request per second)...". The 25/day text also says "subscribe to any of the premium plans",
# so it is recognised as a throttle before the premium check.
_THROTTLE_WORDS = ("rate limit", "call frequency", "calls per", "requests per", "request per", "sparingly")
_SHORT_THROTTLE_WORDS = ("per minute", "per second", "call frequency", "sparingly")
# Client code quotes the 2024+ daily-limit text as "We have detected your API key as <key> and our standard
# API rate limit is 25 requests per day...": the vendor's own text can carry the key.
_KEY_ECHO = re.compile(r"(?i)(api\s*key\s+as\s+)\S+")
_SNIPPET_CHARS = 160


# --- helpers ---------------------------------------------------------------------------------------


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _text(value: object) -> str | None:
    """A vendor string, with Alpha Vantage's placeholders ("None", "-", "") turned into None."""
    if value is None:
        return None
    text = str(value).strip()
    return None if text.lower() in _NULL_STRINGS else text


def _number(value: object) -> float | None:
    """A numeric string ("112.1300", "-0.5852%", "1,234") as a float; placeholders as None.
    Anything else raises ValueError (the parsers turn that into ProviderParseError)."""
    if isinstance(value, bool):
        raise ValueError(f"not a number: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = _text(value)
    if text is None:
        return None
    return float(text.removesuffix("%").replace(",", "").strip())


def _integer(value: object) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """Numbered keys by their name: {"05. price": x} -> {"price": x}; unnumbered keys unchanged."""
    named: dict[str, Any] = {}
    for key, value in item.items():
        prefix, dot, name = key.partition(". ")
        named[name.strip().lower() if dot and prefix.strip().isdigit() else key] = value
    return named


def _zone(name: str | None, provider: str) -> ZoneInfo:
    if not name:
        return NEW_YORK
    try:
        return ZoneInfo(_ZONE_ALIASES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ProviderParseError(provider, f"unknown time zone {name[:40]!r}") from exc


def _clip(text: str) -> str:
    text = _KEY_ECHO.sub(r"\1REDACTED", " ".join(text.split()))
    return text[:_SNIPPET_CHARS]


def _object(payload: object, provider: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ProviderParseError(provider, f"expected a JSON object, got {type(payload).__name__}")
    return payload


def vendor_message_error(payload: Mapping[str, Any], provider: str, *, symbol_call: bool) -> ProviderError | None:
    """The typed error for Alpha Vantage's HTTP-200 message bodies, or None when there is no message.

    * ``Note`` (older throttle wording) -> ProviderRateLimited.
    * ``Information``: throttle wording -> ProviderRateLimited; "premium" (a premium-only function or
      parameter value, e.g. TIME_SERIES_DAILY_ADJUSTED) -> ProviderUnsupported: this plan does not offer
      this request, while others still work, so it must neither count towards opening the vendor's breaker
      (ProviderAuthError would) nor be retried; any other Information text -> ProviderRateLimited (the
      key's documented meaning).
    * ``Error Message``: about the apikey -> ProviderAuthError; on a call naming a symbol ->
      ProviderSymbolNotFound (Alpha Vantage answers "Invalid API call" for an unknown ticker on
      TIME_SERIES_*); otherwise ProviderUnavailable.
    """
    error_message = payload.get("Error Message")
    if isinstance(error_message, str):
        lowered = error_message.lower()
        if "apikey" in lowered or "api key" in lowered:
            return ProviderAuthError(provider, f"key refused: {_clip(error_message)}")
        if symbol_call:
            return ProviderSymbolNotFound(provider, f"unknown symbol: {_clip(error_message)}")
        return ProviderUnavailable(provider, f"error message: {_clip(error_message)}")
    note = payload.get("Note")
    if isinstance(note, str):
        return ProviderRateLimited(provider, f"throttled (Note): {_clip(note)}", retry_after_seconds=60)
    information = payload.get("Information")
    if isinstance(information, str):
        lowered = information.lower()
        if any(word in lowered for word in _THROTTLE_WORDS):
            short = any(word in lowered for word in _SHORT_THROTTLE_WORDS)
            return ProviderRateLimited(
                provider, f"throttled (Information): {_clip(information)}", retry_after_seconds=60 if short else None
            )
        if "premium" in lowered:
            return ProviderUnsupported(provider, f"premium-only request: {_clip(information)}")
        return ProviderRateLimited(provider, f"Information: {_clip(information)}")
    return None


def _require(payload: object, key: str, provider: str, *, symbol_call: bool) -> tuple[dict[str, Any], Any]:
    """The payload as an object and its ``key``; raises the vendor message's error when ``key`` is absent."""
    body = _object(payload, provider)
    if key in body:
        return body, body[key]
    error = vendor_message_error(body, provider, symbol_call=symbol_call)
    if error is not None:
        raise error
    if not body and symbol_call:
        raise ProviderSymbolNotFound(provider, "empty answer for this symbol")
    raise ProviderParseError(provider, f"no {key!r} in payload (keys: {', '.join(sorted(body))[:120]})")


def _base_params(function: str, **extra: str) -> dict[str, str]:
    return {"function": function, **extra, "datatype": "json"}


# --- quotes ------------------------------------------------------------------------------------------


def build_quote_request(symbol: str, *, base_url: str = BASE_URL) -> ProviderRequest:
    """GLOBAL_QUOTE takes exactly one symbol (the batch function, REALTIME_BULK_QUOTES, is premium)."""
    return ProviderRequest(url=base_url, params=_base_params("GLOBAL_QUOTE", symbol=symbol))


def parse_quote_response(payload: object, provider: str, *, symbol: str, now: datetime) -> Quote | None:
    """A GLOBAL_QUOTE payload as a Quote; None when Alpha Vantage does not know the symbol
    (``{"Global Quote": {}}``, ``{}`` or "Invalid API call")."""
    body = _object(payload, provider)
    if not body:
        return None
    try:
        _, raw = _require(body, "Global Quote", provider, symbol_call=True)
    except ProviderSymbolNotFound:
        return None
    if not isinstance(raw, dict):
        raise ProviderParseError(provider, "'Global Quote' is not an object")
    if not raw:
        return None
    item = _fields(raw)
    try:
        price = _number(item.get("price"))
        if price is None:
            return None
        trading_day = _text(item.get("latest trading day"))
        if trading_day is None:
            raise ProviderParseError(provider, f"quote for {symbol!r} has no latest trading day")
        # GLOBAL_QUOTE names only the latest trading day (free keys get end-of-day data), so the quote is
        # stamped at that day's 16:00 New York close, in UTC. While that session is still open the price
        # is a delayed intraday one and the close lies in the future: then it is stamped "now", the
        # latest moment the price can have been current.
        closed_at = datetime.combine(date.fromisoformat(trading_day), SESSION_CLOSE, tzinfo=NEW_YORK).astimezone(UTC)
        return Quote(
            symbol=symbol,
            price=price,
            change=_number(item.get("change")),
            change_percent=_number(item.get("change percent")),
            volume=_integer(item.get("volume")),
            previous_close=_number(item.get("previous close")),
            open=_number(item.get("open")),
            day_high=_number(item.get("high")),
            day_low=_number(item.get("low")),
            as_of=min(closed_at, now.astimezone(UTC)),
        )
    except (ValueError, ValidationError) as exc:
        raise ProviderParseError(provider, f"unexpected quote for {symbol!r}: {_reason(exc)}") from exc


def _reason(exc: ValueError | ValidationError) -> str:
    if isinstance(exc, ValidationError):
        return str(exc.errors()[0]["msg"])[:120]
    return str(exc)[:120]


# --- historical -----------------------------------------------------------------------------------


def _months_before(day: date, months: int) -> date:
    month_index = day.year * 12 + (day.month - 1) - months
    year, month = divmod(month_index, 12)
    month += 1
    next_month = date(year + (month == 12), month % 12 + 1, 1)
    last_day = (next_month - timedelta(days=1)).day
    return date(year, month, min(day.day, last_day))


def period_start(period: Period, now: datetime) -> datetime | None:
    """The oldest instant ``period`` reaches back to from ``now`` (midnight New York, in UTC); None for max."""
    today = now.astimezone(NEW_YORK).date()
    if period is Period.MAX:
        return None
    if period in _SESSION_PERIODS:
        start_day = today - timedelta(days=_SESSION_PERIODS[period][1])
    elif period is Period.YTD:
        start_day = date(today.year, 1, 1)
    else:
        start_day = _months_before(today, _PERIOD_MONTHS[period])
    return datetime.combine(start_day, time(0), tzinfo=NEW_YORK).astimezone(UTC)


def _outputsize(points_needed: int) -> str:
    return "compact" if points_needed <= COMPACT_POINTS else "full"


def build_historical_request(
    symbol: str, period: Period, interval: Interval, *, now: datetime, base_url: str = BASE_URL, provider: str = VENDOR
) -> ProviderRequest:
    """TIME_SERIES_DAILY / WEEKLY / MONTHLY, or TIME_SERIES_INTRADAY for 1m-1h bars over 1d or 5d.

    Daily asks for ``outputsize=compact`` (the latest 100 bars) when the period fits in it, else ``full``;
    intraday likewise counts the bars the period needs. Weekly and monthly always return the full history.
    """
    if interval in _INTRADAY_INTERVALS:
        if period not in _INTRADAY_PERIODS:
            raise ProviderUnsupported(provider, f"{interval.value} bars are offered for periods 1d and 5d only")
        minutes = _INTRADAY_INTERVALS[interval]
        sessions = _SESSION_PERIODS[period][0]
        points = sessions * (_INTRADAY_MINUTES_PER_SESSION // minutes)
        return ProviderRequest(
            url=base_url,
            params=_base_params(
                "TIME_SERIES_INTRADAY", symbol=symbol, interval=f"{minutes}min", outputsize=_outputsize(points)
            ),
        )
    function = _SERIES_FUNCTIONS.get(interval)
    if function is None:
        raise ProviderUnsupported(provider, f"interval {interval.value} is not offered")
    if interval is not Interval.D1:
        return ProviderRequest(url=base_url, params=_base_params(function, symbol=symbol))
    start = period_start(period, now)
    fits_compact = start is not None and (now - start).days <= _COMPACT_CALENDAR_DAYS
    size = "compact" if fits_compact else "full"
    return ProviderRequest(url=base_url, params=_base_params(function, symbol=symbol, outputsize=size))


def _series(body: Mapping[str, Any], provider: str) -> tuple[str, dict[str, Any]]:
    """The time-series object, whatever the function named it ("Time Series (Daily)", "Time Series (1min)",
    "Weekly Time Series", "Monthly Adjusted Time Series", ...)."""
    for key, value in body.items():
        if "time series" in key.lower():
            if not isinstance(value, dict):
                raise ProviderParseError(provider, f"{key!r} is not an object")
            return key, value
    error = vendor_message_error(body, provider, symbol_call=True)
    if error is not None:
        raise error
    if not body:
        raise ProviderSymbolNotFound(provider, "empty answer for this symbol")
    raise ProviderParseError(provider, "no time series in payload")


def _meta_zone(body: Mapping[str, Any], provider: str) -> ZoneInfo:
    meta = body.get("Meta Data")
    if isinstance(meta, dict):
        for key, value in meta.items():
            if key.lower().endswith("time zone") and isinstance(value, str):
                return _zone(value, provider)
    return NEW_YORK


def _bar_time(label: str, interval: Interval, zone: ZoneInfo) -> datetime:
    """A bar's timestamp in UTC from Alpha Vantage's label (in the payload's time zone).

    Intraday labels are date-times and are kept as labelled (Alpha Vantage does not document whether a
    label marks the bar's start or end). Daily labels are dates: the bar is stamped at that session's 09:30
    open. Weekly and monthly bars are labelled with their last trading day; they are stamped at the open
    of the week's Monday / the month's first day, matching PriceBar's "bar's open" and Yahoo's labels.
    """
    if interval in _INTRADAY_INTERVALS:
        return datetime.fromisoformat(label).replace(tzinfo=zone).astimezone(UTC)
    day = date.fromisoformat(label[:10])
    if interval is Interval.WK1:
        day -= timedelta(days=day.weekday())
    elif interval is Interval.MO1:
        day = day.replace(day=1)
    return datetime.combine(day, SESSION_OPEN, tzinfo=zone).astimezone(UTC)


def parse_historical_response(
    payload: object, provider: str, *, symbol: str, period: Period, interval: Interval, now: datetime
) -> HistoricalData:
    """A TIME_SERIES_* payload as HistoricalData: bars oldest first (the payload is newest first), in UTC,
    limited to ``period`` before ``now``, bars without a close dropped. Accepts the plain and the adjusted
    shapes ("5. volume" vs "5. adjusted close" + "6. volume")."""
    body = _object(payload, provider)
    _, series = _series(body, provider)
    zone = _meta_zone(body, provider)
    bars: list[PriceBar] = []
    try:
        for label, raw in series.items():
            if not isinstance(raw, dict):
                raise ProviderParseError(provider, f"bar {label[:20]!r} is not an object")
            item = _fields(raw)
            close = _number(item.get("close"))
            if close is None:
                continue
            bars.append(
                PriceBar(
                    timestamp=_bar_time(label, interval, zone),
                    open=_number(item.get("open")),
                    high=_number(item.get("high")),
                    low=_number(item.get("low")),
                    close=close,
                    adj_close=_number(item.get("adjusted close")),
                    volume=_integer(item.get("volume")),
                )
            )
    except (ValueError, ValidationError) as exc:
        raise ProviderParseError(provider, f"unexpected bar for {symbol!r}: {_reason(exc)}") from exc
    bars.sort(key=lambda bar: bar.timestamp)
    start = period_start(period, now)
    if start is not None:
        bars = [bar for bar in bars if bar.timestamp >= start]
    if period in _SESSION_PERIODS:
        sessions = sorted({bar.timestamp.astimezone(NEW_YORK).date() for bar in bars})[-_SESSION_PERIODS[period][0] :]
        bars = [bar for bar in bars if bar.timestamp.astimezone(NEW_YORK).date() in sessions]
    if not bars:
        raise ProviderNoData(provider, f"no {interval.value} bars for {symbol!r} in period {period.value}")
    return HistoricalData(symbol=symbol, period=period, interval=interval, bars=bars, as_of=bars[-1].timestamp)


# --- profile ------------------------------------------------------------------------------------


def build_profile_request(symbol: str, *, base_url: str = BASE_URL) -> ProviderRequest:
    return ProviderRequest(url=base_url, params=_base_params("OVERVIEW", symbol=symbol))


def parse_profile_response(payload: object, provider: str, *, symbol: str, now: datetime) -> CompanyProfile:
    """An OVERVIEW payload (all strings) as a CompanyProfile; ``{}`` means an unknown symbol.

    OVERVIEW carries no time of its own ("LatestQuarter" dates the financial statements, while the market
    capitalisation is refreshed daily), so ``as_of`` is the time of retrieval."""
    body, _ = _require(payload, "Symbol", provider, symbol_call=True)
    try:
        return CompanyProfile(
            symbol=symbol,
            name=_text(body.get("Name")),
            exchange=_text(body.get("Exchange")),
            currency=_text(body.get("Currency")),
            sector=_text(body.get("Sector")),
            industry=_text(body.get("Industry")),
            country=_text(body.get("Country")),
            website=_text(body.get("OfficialSite")),
            description=_text(body.get("Description")),
            employees=_integer(body.get("FullTimeEmployees")),
            market_cap=_integer(body.get("MarketCapitalization")),
            as_of=now.astimezone(UTC),
        )
    except (ValueError, ValidationError) as exc:
        raise ProviderParseError(provider, f"unexpected overview for {symbol!r}: {_reason(exc)}") from exc


# --- search -------------------------------------------------------------------------------------


def build_search_request(query: str, *, base_url: str = BASE_URL) -> ProviderRequest:
    return ProviderRequest(url=base_url, params=_base_params("SYMBOL_SEARCH", keywords=query))


def parse_search_response(payload: object, provider: str, *, limit: int) -> list[SearchResult]:
    """SYMBOL_SEARCH's ``bestMatches`` (best first) as SearchResults, at most ``limit``. Alpha Vantage gives
    a region ("United States"), not an exchange, so ``exchange`` stays empty; the type is lower-cased
    ("Equity" -> "equity", "ETF" -> "etf")."""
    _, matches = _require(payload, "bestMatches", provider, symbol_call=False)
    if not isinstance(matches, list):
        raise ProviderParseError(provider, "'bestMatches' is not a list")
    results: list[SearchResult] = []
    for raw in matches[: max(limit, 0)]:
        if not isinstance(raw, dict):
            raise ProviderParseError(provider, "search match is not an object")
        item = _fields(raw)
        symbol = _text(item.get("symbol"))
        if symbol is None:
            continue
        asset_type = _text(item.get("type"))
        results.append(
            SearchResult(
                symbol=symbol, name=_text(item.get("name")), asset_type=asset_type.lower() if asset_type else None
            )
        )
    return results


# --- news -------------------------------------------------------------------------------------------


def build_news_request(symbol: str, limit: int, *, base_url: str = BASE_URL) -> ProviderRequest:
    return ProviderRequest(
        url=base_url,
        params=_base_params(
            "NEWS_SENTIMENT", tickers=symbol, sort="LATEST", limit=str(min(max(limit, 1), NEWS_MAX_LIMIT))
        ),
    )


def _published_at(value: object, provider: str) -> datetime:
    # "20220914T141049" (seconds optional: "20220914T1410"). The time is UTC: in the recorded feed a
    # Barron's item stamped 20220701T180900 has the id 1656698874 = 2022-07-01T18:07:54Z in its URL, and a
    # GlobeNewswire earnings release stamped 20220630T200300 went out at 16:03 New York time.
    text = _text(value)
    for layout in ("%Y%m%dT%H%M%S", "%Y%m%dT%H%M"):
        try:
            return datetime.strptime(text or "", layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ProviderParseError(provider, f"unexpected time_published {str(value)[:20]!r}")


def parse_news_response(payload: object, provider: str, *, symbol: str, limit: int) -> list[NewsArticle]:
    """NEWS_SENTIMENT's ``feed`` as NewsArticles, at most ``limit``. The sentiment is the feed item's score
    for ``symbol`` (``ticker_sentiment[].ticker_sentiment_score``, a string) when the item scores it, else
    the item's ``overall_sentiment_score``; ``symbols`` are the tickers the item scores."""
    body = _object(payload, provider)
    information = body.get("Information")
    if "feed" not in body and isinstance(information, str) and "invalid input" in information.lower():
        # Seen in client code (not a recording) for tickers Alpha Vantage has no news coverage for.
        raise ProviderNoData(provider, f"no news for {symbol!r}: {_clip(information)}")
    _, feed = _require(body, "feed", provider, symbol_call=False)
    if not isinstance(feed, list):
        raise ProviderParseError(provider, "'feed' is not a list")
    wanted = symbol.upper()
    articles: list[NewsArticle] = []
    try:
        for item in feed[: max(limit, 0)]:
            if not isinstance(item, dict):
                raise ProviderParseError(provider, "news item is not an object")
            tickers = [t for t in item.get("ticker_sentiment") or [] if isinstance(t, dict)]
            own = next((t for t in tickers if str(t.get("ticker", "")).upper() == wanted), None)
            score = _number(own.get("ticker_sentiment_score")) if own is not None else None
            if score is None:
                score = _number(item.get("overall_sentiment_score"))
            articles.append(
                NewsArticle(
                    title=str(item.get("title") or ""),
                    url=str(item.get("url") or ""),
                    publisher=_text(item.get("source")),
                    published_at=_published_at(item.get("time_published"), provider),
                    summary=_text(item.get("summary")),
                    symbols=[str(t["ticker"]) for t in tickers if _text(t.get("ticker"))],
                    sentiment_score=score,
                )
            )
    except (ValueError, ValidationError) as exc:
        raise ProviderParseError(provider, f"unexpected news item for {symbol!r}: {_reason(exc)}") from exc
    return [article for article in articles if article.title and article.url]


# --- movers -----------------------------------------------------------------------------------------


def build_movers_request(*, base_url: str = BASE_URL) -> ProviderRequest:
    return ProviderRequest(url=base_url, params=_base_params("TOP_GAINERS_LOSERS"))


def _last_updated(value: object, provider: str) -> datetime:
    # "2024-01-12 16:16:00 US/Eastern": a local date-time followed by the zone's name. A stamp without a
    # zone name is read as US/Eastern, the zone Alpha Vantage names in all its US market metadata.
    text = _text(value)
    if text is None:
        raise ProviderParseError(provider, "movers payload has no last_updated")
    parts = text.split(" ")
    stamp, zone_name = (" ".join(parts[:2]), " ".join(parts[2:])) if len(parts) > 2 else (text, "")
    try:
        local = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise ProviderParseError(provider, f"unexpected last_updated {text[:40]!r}") from exc
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    return local.replace(tzinfo=_zone(zone_name or None, provider)).astimezone(UTC)


def parse_movers_response(payload: object, provider: str, *, mover_type: MoverType, limit: int) -> list[Quote]:
    """TOP_GAINERS_LOSERS as Quotes: ``top_gainers`` / ``top_losers`` / ``most_actively_traded`` items
    ({ticker, price, change_amount, change_percentage, volume}, all strings), stamped with ``last_updated``.
    Items whose ticker is not a valid symbol (the list includes odd OTC/warrant spellings) are skipped."""
    key = _MOVER_KEYS[mover_type]
    body, items = _require(payload, key, provider, symbol_call=False)
    if not isinstance(items, list):
        raise ProviderParseError(provider, f"{key!r} is not a list")
    as_of = _last_updated(body.get("last_updated"), provider)
    quotes: list[Quote] = []
    for item in items:
        if len(quotes) >= limit:
            break
        if not isinstance(item, dict):
            raise ProviderParseError(provider, "mover item is not an object")
        try:
            symbol = normalize_symbol(str(item.get("ticker") or ""))
        except ValidationFailed:
            continue
        try:
            price = _number(item.get("price"))
            if price is None:
                continue
            quotes.append(
                Quote(
                    symbol=symbol,
                    price=price,
                    change=_number(item.get("change_amount")),
                    change_percent=_number(item.get("change_percentage")),
                    volume=_integer(item.get("volume")),
                    as_of=as_of,
                )
            )
        except (ValueError, ValidationError) as exc:
            raise ProviderParseError(provider, f"unexpected mover {symbol!r}: {_reason(exc)}") from exc
    return quotes


# --- the adapter ------------------------------------------------------------------------------------


class AlphaVantageProvider(BaseProvider):
    """Alpha Vantage over an injected requests session; the key goes in the ``apikey`` query parameter."""

    vendor_name = VENDOR
    # No INDICES (GLOBAL_QUOTE does not serve ^GSPC-style symbols) and no SECTORS (its SECTOR function
    # is retired; sector ETFs would cost one call each at 5 calls a minute).
    supported = frozenset(
        {DataKind.QUOTE, DataKind.HISTORICAL, DataKind.PROFILE, DataKind.SEARCH, DataKind.NEWS, DataKind.MOVERS}
    )
    quote_batch_size = 1

    def __init__(
        self,
        session: requests.Session,
        *,
        api_key: str,
        base_url: str = BASE_URL,
        source_label: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        super().__init__(session, source_label=source_label)
        if not api_key:
            raise ValueError("Alpha Vantage needs an API key")
        self._api_key = api_key
        self._base_url = base_url
        self._clock = clock

    def get_quotes(self, symbols: Sequence[str], *, timeout_seconds: float) -> dict[str, Quote]:
        if len(symbols) > self.quote_batch_size:
            raise ValueError(f"Alpha Vantage quotes one symbol per request, got {len(symbols)}")
        if not symbols:
            return {}
        symbol = symbols[0].strip().upper()
        if symbol.startswith("^"):
            return {}  # indices are not served by GLOBAL_QUOTE: absent, and no quota spent on them
        now = self._clock()
        quote = self._call(
            build_quote_request(symbol, base_url=self._base_url),
            timeout_seconds,
            lambda payload: parse_quote_response(payload, self._label, symbol=symbol, now=now),
        )
        return {quote.symbol: quote} if quote is not None else {}

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, timeout_seconds: float
    ) -> HistoricalData:
        symbol = symbol.strip().upper()
        now = self._clock()
        request = build_historical_request(
            symbol, period, interval, now=now, base_url=self._base_url, provider=self._label
        )
        return self._call(
            request,
            timeout_seconds,
            lambda payload: parse_historical_response(
                payload, self._label, symbol=symbol, period=period, interval=interval, now=now
            ),
        )

    def get_profile(self, symbol: str, *, timeout_seconds: float) -> CompanyProfile:
        symbol = symbol.strip().upper()
        now = self._clock()
        return self._call(
            build_profile_request(symbol, base_url=self._base_url),
            timeout_seconds,
            lambda payload: parse_profile_response(payload, self._label, symbol=symbol, now=now),
        )

    def search(self, query: str, limit: int, *, timeout_seconds: float) -> list[SearchResult]:
        if limit < 1 or not query.strip():
            return []
        return self._call(
            build_search_request(query.strip(), base_url=self._base_url),
            timeout_seconds,
            lambda payload: parse_search_response(payload, self._label, limit=limit),
        )

    def get_news(self, symbol: str, limit: int, *, timeout_seconds: float) -> list[NewsArticle]:
        if limit < 1:
            return []
        symbol = symbol.strip().upper()
        return self._call(
            build_news_request(symbol, limit, base_url=self._base_url),
            timeout_seconds,
            lambda payload: parse_news_response(payload, self._label, symbol=symbol, limit=limit),
        )

    def get_movers(self, mover_type: MoverType, limit: int, *, timeout_seconds: float) -> list[Quote]:
        if limit < 1:
            return []
        return self._call(
            build_movers_request(base_url=self._base_url),
            timeout_seconds,
            lambda payload: parse_movers_response(payload, self._label, mover_type=mover_type, limit=limit),
        )

    def _call(self, request: ProviderRequest, timeout_seconds: float, parse: Callable[[object], _T]) -> _T:
        """The one network call and the mapping of its payload. The key is added here and nowhere else.

        Any ProviderError (from the fetch or the mapping) is re-raised as a fresh error of the same type:
        detached from the exception it was raised from (a requests exception's text can quote the URL, key
        included) and with any echo of the key in the vendor's text replaced."""
        keyed = ProviderRequest(
            url=request.url, params={**request.params, "apikey": self._api_key}, headers=request.headers
        )
        try:
            return parse(self._get_json(keyed, timeout_seconds=timeout_seconds).payload)
        except ProviderError as exc:
            failure = self._detached(exc)
        raise failure  # outside the except block: no implicit __context__ either

    def _detached(self, exc: ProviderError) -> ProviderError:
        prefix = f"{exc.provider}: "
        message = exc.message.removeprefix(prefix).replace(self._api_key, "REDACTED")
        return type(exc)(exc.provider, message, retry_after_seconds=exc.retry_after_seconds)
