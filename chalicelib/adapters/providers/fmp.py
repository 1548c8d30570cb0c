"""Financial Modeling Prep (https://financialmodelingprep.com) over plain REST, ``/stable`` generation.

The three steps of every provider, per data kind: ``build_<kind>_request`` (pure: a ProviderRequest
without the key), the fetch (``BaseProvider._get_json``, the only network I/O, always with a timeout),
``parse_<kind>_response`` (pure: the vendor payload onto the standard models, vendor quirks onto typed
ProviderErrors). Mapped against the genuine recordings in tests/fixtures/providers/fmp/.

Endpoints (one request per public method; FMP retired ``/api/v3`` for keys issued after August 2025, so
only ``/stable`` is called, but the parsers also read the v3 field names and shapes, which the older
recordings show and which real answers still mix):
- quote (also indices ``^GSPC`` and the sector ETFs): one symbol -> ``/stable/quote?symbol=``; several ->
  ``/stable/batch-quote?symbols=A,B,C``. Both answer an array of the same quote object. FMP sells
  batch-quote on paid plans only (free keys get a 402), so a lone symbol uses the free single quote.
- historical: ``/stable/historical-price-eod/full?symbol=&from=&to=`` (daily bars, newest first).
  Weekly and monthly bars are aggregated from those daily bars (first open, highest high, lowest low,
  last close, summed volume) over whole weeks/months; intraday intervals are not offered.
- profile: ``/stable/profile?symbol=``; search: ``/stable/search-symbol?query=&limit=``;
  movers: ``/stable/biggest-gainers``, ``/stable/biggest-losers``, ``/stable/most-actives``.

FMP's answers and what they become:
- unknown symbol: HTTP 200 ``[]`` -> absent from quotes; ProviderSymbolNotFound for history/profile.
- ``{"Error Message": "Invalid API KEY. ..."}`` (HTTP 401, or any status) -> ProviderAuthError.
- ``{"Error Message": "Limit Reach . ..."}`` (HTTP 429, or HTTP 200) -> ProviderRateLimited.
- HTTP 402/403 (or 200) whose message says the plan lacks the endpoint ("Exclusive Endpoint",
  "Premium", "Legacy Endpoint", "Restricted Endpoint", "not available under your current
  subscription") -> ProviderUnsupported: our key works, this endpoint is not in its plan. That is
  neither a failure of FMP (the breaker must not open FMP for the kinds the plan does cover) nor
  worth retrying; the adapter remembers the refusal for ``PLAN_REFUSAL_MEMORY`` and answers
  ProviderUnsupported without spending quota until then. Any other 401/402/403 (other wording, an
  HTML or plain-text body) -> ProviderAuthError. The wording is read from FMP's own message, which
  ``fetch_json`` quotes in its ProviderAuthError after the status.
- any other ``{"Error Message": ...}`` / ``{"error": ...}`` object on HTTP 200 -> ProviderParseError:
  FMP answered deterministically with something that is not the documented payload (a rejected
  parameter, a renamed endpoint); retrying the same request cannot change it (so not the retryable
  ProviderUnavailable), and it should count towards the breaker.
- an object where an array is documented -> ProviderParseError.

Auth: the key travels as the ``apikey`` query parameter, as FMP documents it for every endpoint. It
is attached at fetch time (built requests never hold it), never logged, and never in an error:
requests puts the full URL, key included, into its exception messages, so every ProviderError leaving
this adapter is re-raised without its cause chain and with the key scrubbed from its text.

Times: FMP's daily bars are New York session dates; a bar is stamped at that session's 09:30 New York
open (in UTC), weekly/monthly bars at the open of the period's first weekday (Yahoo's and the Tiingo
adapter's convention). Quotes carry FMP's ``timestamp`` (epoch seconds). Movers and profiles carry no
time at all: they are dated by this adapter's clock when the answer arrived (the reply's ``Date``
header is not exposed by ``fetch_json``), which is when FMP's snapshot was at least that current.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests
from pydantic import ValidationError

from chalicelib.adapters.providers.base import BaseProvider, JsonReply, ProviderRequest
from chalicelib.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNoData,
    ProviderParseError,
    ProviderRateLimited,
    ProviderSymbolNotFound,
    ProviderUnsupported,
    ValidationFailed,
)
from chalicelib.models.market import (
    CompanyProfile,
    DataKind,
    HistoricalData,
    Interval,
    MoverType,
    Period,
    PriceBar,
    Quote,
    SearchResult,
    normalize_symbol,
)

FMP_BASE_URL = "https://financialmodelingprep.com"
NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = time(9, 30)

# Symbols per batch-quote call. FMP documents no maximum; clients in the wild send 50-150. 100 keeps
# the URL near 1.3 KB (100 x up to 12 characters + commas, far below the ~8 KB proxies accept) and the
# answer near 50 KB (about 450 bytes per quote object), and makes 500 quotes five calls.
QUOTE_BATCH_SIZE = 100
# How long a "your plan lacks this endpoint" answer is trusted before the endpoint is asked again.
PLAN_REFUSAL_MEMORY = timedelta(hours=1)
SEARCH_MAX_LIMIT = 100

MOVER_PATHS: Mapping[MoverType, str] = {
    MoverType.GAINERS: "/stable/biggest-gainers",
    MoverType.LOSERS: "/stable/biggest-losers",
    MoverType.ACTIVES: "/stable/most-actives",
}
DAILY_INTERVALS = frozenset({Interval.D1, Interval.WK1, Interval.MO1})
# "1d"/"5d" mean the last 1 / 5 sessions (as Yahoo reads them), not calendar days: ask for a window
# that surely holds them (long weekends, holidays) and keep the newest sessions.
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
# "max": a start before any US listing; FMP answers from the first bar it holds (its plan may cap it).
MAX_START = date(1900, 1, 1)

_NULL_STRINGS = frozenset({"", "none", "null", "-", "n/a", "nan"})
_ERROR_KEYS = ("Error Message", "error", "message")
# Lower-cased fragments of FMP's plan-refusal wording (fixtures README and issue threads).
_PLAN_MARKERS = (
    "exclusive endpoint",
    "premium",
    "legacy endpoint",
    "restricted endpoint",
    "not available under your current subscription",
    "only available for",
    "special endpoint",
)


# --- build (pure) -----------------------------------------------------------------------------------


def build_quote_request(symbols: Sequence[str], *, base_url: str = FMP_BASE_URL) -> ProviderRequest:
    if not symbols:
        raise ValueError("at least one symbol is required")
    if len(symbols) > QUOTE_BATCH_SIZE:
        raise ValueError(f"at most {QUOTE_BATCH_SIZE} symbols per request")
    if len(symbols) == 1:
        return ProviderRequest(url=f"{base_url}/stable/quote", params={"symbol": symbols[0]})
    return ProviderRequest(url=f"{base_url}/stable/batch-quote", params={"symbols": ",".join(symbols)})


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


def _period_first_day(day: date, interval: Interval) -> date:
    """The calendar start of the week (Monday) or month a day belongs to; the day itself for daily bars."""
    if interval is Interval.WK1:
        return day - timedelta(days=day.weekday())
    if interval is Interval.MO1:
        return day.replace(day=1)
    return day


def build_historical_request(
    symbol: str, period: Period, interval: Interval, *, today: date, base_url: str = FMP_BASE_URL
) -> ProviderRequest:
    """Daily bars from the start of the first whole week/month of the period (so that no aggregated bar
    is cut short at the start), to today. Raises ProviderUnsupported (vendor ``fmp``) for intraday."""
    if interval not in DAILY_INTERVALS:
        raise ProviderUnsupported("fmp", f"{interval.value} bars are not offered (daily, weekly, monthly only)")
    start = history_start(period, today)
    if start != MAX_START:
        start = _period_first_day(start, interval)
    return ProviderRequest(
        url=f"{base_url}/stable/historical-price-eod/full",
        params={"symbol": symbol, "from": start.isoformat(), "to": today.isoformat()},
    )


def build_profile_request(symbol: str, *, base_url: str = FMP_BASE_URL) -> ProviderRequest:
    return ProviderRequest(url=f"{base_url}/stable/profile", params={"symbol": symbol})


def build_search_request(query: str, limit: int, *, base_url: str = FMP_BASE_URL) -> ProviderRequest:
    text = query.strip()
    if not text:
        raise ValueError("query must not be empty")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/stable/search-symbol",
        params={"query": text, "limit": str(min(limit, SEARCH_MAX_LIMIT))},
    )


def build_movers_request(mover_type: MoverType, *, base_url: str = FMP_BASE_URL) -> ProviderRequest:
    return ProviderRequest(url=f"{base_url}{MOVER_PATHS[mover_type]}", params={})


# --- parse (pure) -----------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    """A JSON number, or a numeric string ("12.5", "-0.58%", "(+0.35%)", "1,234"); null-ish: None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _NULL_STRINGS:
            return None
        text = text.strip("()").removesuffix("%").replace(",", "").strip()
        try:
            return float(text)
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


def _first(item: Mapping[str, Any], *keys: str) -> object:
    """The first of ``keys`` present with a non-null value (stable and v3 spell some fields differently)."""
    for key in keys:
        value = item.get(key)
        if value is not None and not (isinstance(value, str) and value.strip().lower() in _NULL_STRINGS):
            return value
    return None


def error_message(payload: object) -> str | None:
    """FMP's error text when the payload is an error object (``{"Error Message": ...}``, ``{"error": ...}``)."""
    if not isinstance(payload, dict):
        return None
    for key in _ERROR_KEYS:
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:200]
    return None


def _is_plan_refusal(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _PLAN_MARKERS)


def classify_error(message: str, provider: str) -> ProviderError:
    """The typed error for an FMP error object that came with HTTP 200."""
    lowered = message.lower()
    if "invalid api key" in lowered:
        return ProviderAuthError(provider, message)
    if "limit reach" in lowered:  # checked before the plan markers: it also says "upgrade your plan"
        return ProviderRateLimited(provider, message)
    if _is_plan_refusal(message):
        return ProviderUnsupported(provider, f"not in this FMP plan ({message})")
    return ProviderParseError(provider, f"FMP said {message!r} instead of data")


def raise_for_error_object(payload: object, provider: str) -> None:
    message = error_message(payload)
    if message is not None:
        raise classify_error(message, provider)


def _expect_list(payload: object, provider: str, what: str) -> list[Any]:
    raise_for_error_object(payload, provider)
    if not isinstance(payload, list):
        raise ProviderParseError(provider, f"{what}: expected a JSON array, got {type(payload).__name__}")
    for item in payload:
        if not isinstance(item, dict):
            raise ProviderParseError(provider, f"{what}: an item is not a JSON object")
    return payload


def _epoch(value: object) -> datetime | None:
    seconds = _number(value)
    if seconds is None or seconds <= 0:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC)


def _is_servable_symbol(symbol: str) -> bool:
    """A ticker the service can key and serve (FMP also lists warrants/units no request can name)."""
    try:
        normalize_symbol(symbol)
    except ValidationFailed:
        return False
    return True


def _quote_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """The quote fields both generations share, under either spelling."""
    return {
        "price": _number(item.get("price")),
        "change": _number(item.get("change")),
        # stable quote: changePercentage; v3 quote and the stable movers lists: changesPercentage.
        "change_percent": _number(_first(item, "changePercentage", "changesPercentage")),
        "volume": _integer(item.get("volume")),
        "previous_close": _number(item.get("previousClose")),
        "open": _number(item.get("open")),
        "day_high": _number(item.get("dayHigh")),
        "day_low": _number(item.get("dayLow")),
        "fifty_two_week_high": _number(item.get("yearHigh")),
        "fifty_two_week_low": _number(item.get("yearLow")),
        "market_cap": _integer(_first(item, "marketCap", "mktCap")),
        "name": _text(item.get("name")),
        "currency": _text(item.get("currency")),
        "exchange": _text(_first(item, "exchange", "exchangeShortName")),
    }


def parse_quote_response(payload: object, provider: str) -> dict[str, Quote]:
    """Quote objects keyed by symbol. Symbols FMP does not know are simply not in the array (``[]`` for
    all unknown). Items without a price or FMP's ``timestamp`` cannot be served as a dated quote and are
    left out (the chain asks another provider for those symbols)."""
    quotes: dict[str, Quote] = {}
    for item in _expect_list(payload, provider, "quote"):
        symbol = _text(item.get("symbol"))
        if symbol is None:
            raise ProviderParseError(provider, "quote item without a symbol")
        fields = _quote_fields(item)
        as_of = _epoch(item.get("timestamp"))
        if fields["price"] is None or as_of is None or not _is_servable_symbol(symbol):
            continue
        try:
            quote = Quote(symbol=symbol, as_of=as_of, **fields)
        except ValidationError as exc:
            raise ProviderParseError(
                provider, f"unexpected quote for {symbol[:16]!r}: {exc.errors()[0]['msg']}"
            ) from exc
        quotes[quote.symbol] = quote
    return quotes


def parse_movers_response(payload: object, provider: str, limit: int, *, received_at: datetime) -> list[Quote]:
    """Gainers/losers/actives, in FMP's order, at most ``limit``. The lists carry no time: each quote is
    dated by its own ``timestamp`` when present, else ``received_at`` (when the answer arrived). Items
    without a price, or whose symbol is not a ticker the service can serve (warrants and units longer
    than a ticker), are skipped."""
    movers: list[Quote] = []
    for item in _expect_list(payload, provider, "movers"):
        if len(movers) >= limit:
            break
        symbol = _text(item.get("symbol"))
        fields = _quote_fields(item)
        if symbol is None or fields["price"] is None or not _is_servable_symbol(symbol):
            continue
        try:
            movers.append(Quote(symbol=symbol, as_of=_epoch(item.get("timestamp")) or received_at, **fields))
        except ValidationError as exc:
            raise ProviderParseError(provider, f"unexpected mover {symbol!r}: {exc.errors()[0]['msg']}") from exc
    return movers


def _session_date(value: object, provider: str) -> date:
    if not isinstance(value, str):
        raise ProviderParseError(provider, f"expected a date string, got {type(value).__name__}")
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError as exc:
        raise ProviderParseError(provider, f"unreadable date {value[:40]!r}") from exc


def _at_session_open(day: date) -> datetime:
    return datetime.combine(day, SESSION_OPEN, tzinfo=NEW_YORK).astimezone(UTC)


@dataclass(frozen=True)
class _DailyBar:
    day: date
    open: float | None
    high: float | None
    low: float | None
    close: float
    adj_close: float | None
    volume: int | None


def _daily_items(payload: object, provider: str, symbol: str) -> list[Any]:
    """The bar objects of either shape: stable's flat array, or v3's ``{symbol, historical: [...]}``.
    ``[]`` (stable) and ``{}`` (v3) are FMP's answer for a symbol it does not know."""
    raise_for_error_object(payload, provider)
    if payload == [] or payload == {}:
        raise ProviderSymbolNotFound(provider, f"{symbol} is unknown to FMP (empty answer)")
    if isinstance(payload, dict):
        if "historical" not in payload:
            raise ProviderParseError(provider, "historical prices: an object without 'historical'")
        payload = payload["historical"]
    return _expect_list(payload, provider, "historical prices")


def _aggregate(bars: list[_DailyBar], interval: Interval) -> list[tuple[date, _DailyBar]]:
    """(period start, bar) per week or month: first open, highest high, lowest low, last close, summed
    volume (None if a day lacks it), last adjusted close. Daily bars pass through."""
    if interval is Interval.D1:
        return [(bar.day, bar) for bar in bars]
    groups: dict[date, list[_DailyBar]] = {}
    for bar in bars:
        groups.setdefault(_period_first_day(bar.day, interval), []).append(bar)
    out: list[tuple[date, _DailyBar]] = []
    for start, days in groups.items():
        highs = [d.high for d in days if d.high is not None]
        lows = [d.low for d in days if d.low is not None]
        volumes = [d.volume for d in days]
        out.append(
            (
                start,
                _DailyBar(
                    day=days[-1].day,
                    open=days[0].open,
                    high=max(highs) if highs else None,
                    low=min(lows) if lows else None,
                    close=days[-1].close,
                    adj_close=days[-1].adj_close,
                    volume=None if any(v is None for v in volumes) else sum(v for v in volumes if v is not None),
                ),
            )
        )
    return out


def _first_weekday(day: date) -> date:
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def parse_historical_response(
    payload: object, provider: str, symbol: str, period: Period, interval: Interval
) -> HistoricalData:
    if interval not in DAILY_INTERVALS:
        raise ProviderUnsupported(provider, f"{interval.value} bars are not offered")
    daily: list[_DailyBar] = []
    for item in _daily_items(payload, provider, symbol):
        close = _number(item.get("close"))
        if close is None:
            continue
        daily.append(
            _DailyBar(
                day=_session_date(item.get("date"), provider),
                open=_number(item.get("open")),
                high=_number(item.get("high")),
                low=_number(item.get("low")),
                close=close,
                adj_close=_number(item.get("adjClose")),  # v3 only; stable eod/full has none
                volume=_integer(item.get("volume")),
            )
        )
    daily.sort(key=lambda bar: bar.day)  # FMP sends newest first
    if period in SESSION_PERIODS and interval is Interval.D1:
        daily = daily[-SESSION_PERIODS[period] :]
    bars: list[PriceBar] = []
    for start, bar in _aggregate(daily, interval):
        try:
            bars.append(
                PriceBar(
                    timestamp=_at_session_open(_first_weekday(start)),
                    open=bar.open,
                    high=bar.high,
                    low=bar.low,
                    close=bar.close,
                    adj_close=bar.adj_close,
                    volume=bar.volume,
                )
            )
        except ValidationError as exc:
            raise ProviderParseError(provider, f"unexpected bar for {symbol}: {exc.errors()[0]['msg']}") from exc
    if not bars:
        raise ProviderNoData(provider, f"no {interval.value} bars with a close for {symbol} over {period.value}")
    return HistoricalData(symbol=symbol, period=period, interval=interval, bars=bars, as_of=bars[-1].timestamp)


def parse_profile_response(payload: object, provider: str, symbol: str, *, received_at: datetime) -> CompanyProfile:
    """The one profile object (an array of one; ``[]`` for an unknown symbol). FMP profiles carry no
    time: ``as_of`` is ``received_at``."""
    items = _expect_list(payload, provider, "profile")
    if not items:
        raise ProviderSymbolNotFound(provider, f"{symbol} is unknown to FMP (empty answer)")
    item = items[0]
    try:
        return CompanyProfile(
            symbol=symbol,
            name=_text(_first(item, "companyName", "name")),
            # v3: exchange is the long name, exchangeShortName the code; stable: exchange is the code.
            exchange=_text(_first(item, "exchangeShortName", "exchange")),
            currency=_text(item.get("currency")),
            sector=_text(item.get("sector")),
            industry=_text(item.get("industry")),
            country=_text(item.get("country")),
            website=_text(item.get("website")),
            description=_text(item.get("description")),
            employees=_integer(item.get("fullTimeEmployees")),  # a string ("161000") in recordings
            market_cap=_integer(_first(item, "marketCap", "mktCap")),
            as_of=received_at,
        )
    except ValidationError as exc:
        raise ProviderParseError(provider, f"unexpected profile for {symbol}: {exc.errors()[0]['msg']}") from exc


def parse_search_response(payload: object, provider: str, limit: int) -> list[SearchResult]:
    """``[{symbol, name, currency, exchangeFullName, exchange}]`` (FMP docs; no recording exists)."""
    results: list[SearchResult] = []
    for item in _expect_list(payload, provider, "search"):
        symbol = _text(item.get("symbol"))
        if symbol is None:
            continue
        results.append(
            SearchResult(
                symbol=symbol,
                name=_text(item.get("name")),
                exchange=_text(_first(item, "exchange", "exchangeShortName", "exchangeFullName")),
            )
        )
    return results[:limit]


# --- the adapter ------------------------------------------------------------------------------------


class FmpProvider(BaseProvider):
    """FMP ``/stable`` REST: batch quotes (indices, sector ETFs), daily/weekly/monthly history, profiles,
    symbol search and market movers."""

    vendor_name = "fmp"
    supported = frozenset(
        {
            DataKind.QUOTE,
            DataKind.INDICES,
            DataKind.SECTORS,
            DataKind.HISTORICAL,
            DataKind.PROFILE,
            DataKind.SEARCH,
            DataKind.MOVERS,
        }
    )
    quote_batch_size = QUOTE_BATCH_SIZE

    def __init__(
        self,
        session: requests.Session,
        *,
        api_key: str,
        base_url: str = FMP_BASE_URL,
        source_label: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(session, source_label=source_label)
        if not api_key:
            raise ValueError("an FMP API key is required")
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")
        self._clock = clock
        # endpoint path -> until when FMP's "not in your plan" answer is trusted (per container).
        self._plan_refusals: dict[str, datetime] = {}

    def __repr__(self) -> str:
        return f"FmpProvider(base_url={self._base_url!r}, source_label={self._label!r})"

    # --- fetch ------------------------------------------------------------------------------------

    def _fetch(self, request: ProviderRequest, timeout_seconds: float) -> JsonReply:
        """The one upstream call, with the key added here. Every error leaves without its cause chain
        and with the key scrubbed; a 402/403 whose FMP message says the plan lacks the endpoint becomes
        ProviderUnsupported (and is remembered), any other 401/402/403 stays ProviderAuthError."""
        path = request.url.removeprefix(self._base_url)
        refused_until = self._plan_refusals.get(path)
        if refused_until is not None and self._clock() < refused_until:
            raise ProviderUnsupported(self._label, f"{path} is not in this FMP plan (FMP said so recently)")
        keyed = replace(request, params={**request.params, "apikey": self._api_key})
        try:
            reply = self._get_json(keyed, timeout_seconds=timeout_seconds)
            raise_for_error_object(reply.payload, self._label)  # FMP's error objects on HTTP 200
            return reply
        except ProviderAuthError as exc:
            failure: ProviderError = self._plan_refusal(exc)
        except ProviderError as exc:
            failure = exc
        if isinstance(failure, ProviderUnsupported):
            self._plan_refusals[path] = self._clock() + PLAN_REFUSAL_MEMORY
        # Raised outside the except block and from None: neither __cause__ nor __context__ keeps a
        # requests exception, whose text holds the full URL and so the key.
        raise self._scrubbed(failure) from None

    def _plan_refusal(self, error: ProviderAuthError) -> ProviderError:
        """fetch_json quotes FMP's own message (its "Error Message" field) after the status; when that
        message is FMP's plan wording, the key is fine and only this endpoint is refused."""
        text = error.message.removeprefix(f"{error.provider}: ")
        if not _is_plan_refusal(text):
            return error
        return ProviderUnsupported(self._label, f"not in this FMP plan ({text})")

    def _scrubbed(self, error: ProviderError) -> ProviderError:
        message = error.message.removeprefix(f"{error.provider}: ").replace(self._api_key, "<redacted>")
        return type(error)(error.provider, message, retry_after_seconds=error.retry_after_seconds)

    def _today(self) -> date:
        return self._clock().astimezone(NEW_YORK).date()

    # --- data kinds -------------------------------------------------------------------------------

    def get_quotes(self, symbols: Sequence[str], *, timeout_seconds: float) -> dict[str, Quote]:
        if not symbols:
            return {}
        reply = self._fetch(build_quote_request(symbols, base_url=self._base_url), timeout_seconds)
        return parse_quote_response(reply.payload, self._label)

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, timeout_seconds: float
    ) -> HistoricalData:
        try:
            request = build_historical_request(symbol, period, interval, today=self._today(), base_url=self._base_url)
        except ProviderUnsupported as exc:
            raise ProviderUnsupported(self._label, exc.message.removeprefix("fmp: ")) from None
        reply = self._fetch(request, timeout_seconds)
        return parse_historical_response(reply.payload, self._label, symbol, period, interval)

    def get_profile(self, symbol: str, *, timeout_seconds: float) -> CompanyProfile:
        reply = self._fetch(build_profile_request(symbol, base_url=self._base_url), timeout_seconds)
        received_at = self._clock()
        return parse_profile_response(reply.payload, self._label, symbol, received_at=received_at)

    def search(self, query: str, limit: int, *, timeout_seconds: float) -> list[SearchResult]:
        reply = self._fetch(build_search_request(query, limit, base_url=self._base_url), timeout_seconds)
        return parse_search_response(reply.payload, self._label, limit)

    def get_movers(self, mover_type: MoverType, limit: int, *, timeout_seconds: float) -> list[Quote]:
        if limit < 1:
            return []
        reply = self._fetch(build_movers_request(mover_type, base_url=self._base_url), timeout_seconds)
        received_at = self._clock()
        return parse_movers_response(reply.payload, self._label, limit, received_at=received_at)
