"""Alpha Vantage TIME_SERIES_DAILY / WEEKLY / MONTHLY, or TIME_SERIES_INTRADAY for 1m-1h bars over 1d or 5d."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from chalicelib.adapters.providers.alpha_vantage._common import (
    BASE_URL,
    VENDOR,
    base_params,
    fields,
    raise_vendor_message,
    zone,
)
from chalicelib.adapters.providers.calls import HistoryAsk, JsonReply, ProviderRequest
from chalicelib.adapters.providers.market_calendar import (
    NEW_YORK,
    PERIOD_MONTHS,
    SESSION_OPEN,
    keep_last_sessions,
    months_before,
    period_first_day,
)
from chalicelib.adapters.providers.values import integer, json_object, number
from chalicelib.errors import ProviderNoData, ProviderParseError, ProviderUnsupported
from chalicelib.models.market import DataKind, HistoricalData, Interval, Period, PriceBar

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
        start_day = months_before(today, PERIOD_MONTHS[period])
    return datetime.combine(start_day, time(0), tzinfo=NEW_YORK).astimezone(UTC)


def _outputsize(points_needed: int) -> str:
    return "compact" if points_needed <= COMPACT_POINTS else "full"


def build_historical_request(
    symbol: str, period: Period, interval: Interval, *, now: datetime, base_url: str = BASE_URL, provider: str = VENDOR
) -> ProviderRequest:
    """Daily asks for ``outputsize=compact`` (the latest 100 bars) when the period fits in it, else ``full``;
    intraday likewise counts the bars the period needs. Weekly and monthly always return the full history.
    """
    if interval in _INTRADAY_INTERVALS:
        if period not in _INTRADAY_PERIODS:
            raise ProviderUnsupported(provider, f"{interval.value} bars are offered for periods 1d and 5d only")
        minutes = _INTRADAY_INTERVALS[interval]
        points = _SESSION_PERIODS[period][0] * (_INTRADAY_MINUTES_PER_SESSION // minutes)
        return ProviderRequest(
            url=base_url,
            params=base_params(
                "TIME_SERIES_INTRADAY", symbol=symbol, interval=f"{minutes}min", outputsize=_outputsize(points)
            ),
        )
    function = _SERIES_FUNCTIONS.get(interval)
    if function is None:
        raise ProviderUnsupported(provider, f"interval {interval.value} is not offered")
    if interval is not Interval.D1:
        return ProviderRequest(url=base_url, params=base_params(function, symbol=symbol))
    start = period_start(period, now)
    fits_compact = start is not None and (now - start).days <= _COMPACT_CALENDAR_DAYS
    size = "compact" if fits_compact else "full"
    return ProviderRequest(url=base_url, params=base_params(function, symbol=symbol, outputsize=size))


def _series(body: Mapping[str, Any], provider: str) -> dict[str, Any]:
    """The time-series object, whatever the function named it ("Time Series (Daily)", "Time Series (1min)",
    "Weekly Time Series", "Monthly Adjusted Time Series", ...)."""
    key = next((name for name in body if "time series" in name.lower()), None)
    if key is None:
        raise_vendor_message(body, provider, symbol_call=True, what="time series")
    value = body[key]
    if not isinstance(value, dict):
        raise ProviderParseError(provider, f"{key!r} is not an object")
    return value


def _meta_zone(body: Mapping[str, Any], provider: str) -> ZoneInfo:
    meta = body.get("Meta Data")
    if isinstance(meta, dict):
        for key, value in meta.items():
            if key.lower().endswith("time zone") and isinstance(value, str):
                return zone(value, provider)
    return NEW_YORK


def _bar_time(label: str, interval: Interval, bar_zone: ZoneInfo) -> datetime:
    """A bar's timestamp in UTC from Alpha Vantage's label (in the payload's time zone).

    Intraday labels are date-times and are kept as labelled (Alpha Vantage does not document whether a
    label marks the bar's start or end). Daily labels are dates: the bar is stamped at that session's 09:30
    open. Weekly and monthly bars are labelled with their last trading day; they are stamped at the open
    of the week's Monday / the month's first day, matching PriceBar's "bar's open" and Yahoo's labels.
    """
    if interval in _INTRADAY_INTERVALS:
        return datetime.fromisoformat(label).replace(tzinfo=bar_zone).astimezone(UTC)
    day = period_first_day(date.fromisoformat(label[:10]), interval)
    return datetime.combine(day, SESSION_OPEN, tzinfo=bar_zone).astimezone(UTC)


def parse_historical_response(
    payload: object, provider: str, *, symbol: str, period: Period, interval: Interval, now: datetime
) -> HistoricalData:
    """Bars oldest first (the payload is newest first), in UTC, limited to ``period`` before ``now``, bars
    without a close dropped. Accepts the plain and the adjusted shapes ("5. volume" vs "5. adjusted close"
    + "6. volume")."""
    body = json_object(payload, provider)
    series = _series(body, provider)
    bar_zone = _meta_zone(body, provider)
    bars: list[PriceBar] = []
    for label, raw in series.items():
        if not isinstance(raw, dict):
            raise ProviderParseError(provider, f"bar {label[:20]!r} is not an object")
        item = fields(raw)
        close = number(item.get("close"), strict=True)
        if close is None:
            continue
        bars.append(
            PriceBar(
                timestamp=_bar_time(label, interval, bar_zone),
                open=number(item.get("open"), strict=True),
                high=number(item.get("high"), strict=True),
                low=number(item.get("low"), strict=True),
                close=close,
                adj_close=number(item.get("adjusted close"), strict=True),
                volume=integer(item.get("volume"), strict=True),
            )
        )
    bars.sort(key=lambda bar: bar.timestamp)
    start = period_start(period, now)
    if start is not None:
        bars = [bar for bar in bars if bar.timestamp >= start]
    if period in _SESSION_PERIODS:
        bars = keep_last_sessions(bars, _SESSION_PERIODS[period][0])
    if not bars:
        raise ProviderNoData(provider, f"no {interval.value} bars for {symbol!r} in period {period.value}")
    return HistoricalData(symbol=symbol, period=period, interval=interval, bars=bars, as_of=bars[-1].timestamp)


KIND = DataKind.HISTORICAL


def build(ask: HistoryAsk) -> ProviderRequest:
    symbol = ask.symbol.strip().upper()
    return build_historical_request(
        symbol, ask.period, ask.interval, now=ask.clock(), base_url=ask.base_url, provider=ask.provider
    )


def parse(reply: JsonReply, ask: HistoryAsk) -> HistoricalData:
    symbol = ask.symbol.strip().upper()
    return parse_historical_response(
        reply.payload, ask.provider, symbol=symbol, period=ask.period, interval=ask.interval, now=ask.clock()
    )
