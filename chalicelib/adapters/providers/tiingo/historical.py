"""Tiingo historical bars: ``/tiingo/daily/{ticker}/prices`` with ``resampleFreq=daily|weekly|monthly``,
intraday from ``/iex/{ticker}/prices`` with ``resampleFreq=1min|5min|15min|30min|1hour``.

Bar timestamps follow the standard model (the bar's open, UTC): a daily bar is stamped at its
session's 09:30 New York open; Tiingo labels weekly bars by the week's Friday and monthly bars by the
month's last business day, so those are stamped at the open of the period's first weekday (Yahoo's
convention), the values unchanged. Intraday (IEX) bars already carry their start time in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from chalicelib.adapters.providers.calls import HistoryAsk, JsonReply, ProviderRequest
from chalicelib.adapters.providers.market_calendar import (
    SESSION_OPEN,
    SESSION_PERIODS,
    at_new_york,
    first_weekday,
    history_start,
    keep_last_sessions,
    new_york_today,
    period_first_day,
)
from chalicelib.adapters.providers.tiingo import _common as tiingo
from chalicelib.adapters.providers.values import integer, number
from chalicelib.errors import ProviderNoData, ProviderSymbolNotFound, ProviderUnsupported
from chalicelib.models.market import DataKind, HistoricalData, Interval, Period, PriceBar

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


def build_historical_request(
    symbol: str, period: Period, interval: Interval, *, today: date, base_url: str = tiingo.TIINGO_BASE_URL
) -> ProviderRequest:
    """Raises ProviderUnsupported (vendor ``tiingo``) for an interval/period Tiingo cannot serve whole."""
    if interval in DAILY_FREQUENCIES:
        template, frequency = "/tiingo/daily/{ticker}/prices", DAILY_FREQUENCIES[interval]
    elif interval in INTRADAY_FREQUENCIES:
        if period not in INTRADAY_PERIODS[interval]:
            raise ProviderUnsupported(
                "tiingo", f"{interval.value} bars only cover the last 2000 bars; period {period.value} is too long"
            )
        template, frequency = "/iex/{ticker}/prices", INTRADAY_FREQUENCIES[interval]
    else:  # pragma: no cover - every Interval is mapped above
        raise ProviderUnsupported("tiingo", f"interval {interval.value} is not offered")
    params = {
        "startDate": history_start(period, today).isoformat(),
        "endDate": today.isoformat(),
        "resampleFreq": frequency,
    }
    return tiingo.symbol_request(base_url, template, symbol, params)


def _bar_start(day: date, interval: Interval) -> date:
    """Daily bars keep their session; weekly/monthly ones start on their period's first weekday."""
    start = period_first_day(day, interval)
    return first_weekday(start) if interval is Interval.MO1 else start


def parse_historical_response(
    payload: object, provider: str, symbol: str, period: Period, interval: Interval
) -> HistoricalData:
    """Daily/weekly/monthly (``/tiingo/daily/.../prices``) or IEX intraday (``/iex/.../prices``) bars."""
    bars: list[PriceBar] = []
    intraday = interval in INTRADAY_FREQUENCIES
    for item in tiingo.expect_list(payload, provider, "prices"):
        close = number(item.get("close"))
        if close is None:
            continue
        if intraday:
            stamp = tiingo.parse_timestamp(item.get("date"), provider)
        else:
            stamp = at_new_york(_bar_start(tiingo.session_date(item.get("date"), provider), interval), SESSION_OPEN)
        bars.append(
            PriceBar(
                timestamp=stamp,
                open=number(item.get("open")),
                high=number(item.get("high")),
                low=number(item.get("low")),
                close=close,
                # IEX bars carry no adjClose and (unless asked via `columns`) no volume: None.
                adj_close=number(item.get("adjClose")),
                volume=integer(item.get("volume")),
            )
        )
    bars.sort(key=lambda bar: bar.timestamp)
    if period in SESSION_PERIODS and (intraday or interval is Interval.D1):
        bars = keep_last_sessions(bars, SESSION_PERIODS[period])
    if not bars:
        raise ProviderNoData(provider, f"no {interval.value} bars for {symbol} over {period.value}")
    return HistoricalData(symbol=symbol, period=period, interval=interval, bars=bars, as_of=bars[-1].timestamp)


KIND = DataKind.HISTORICAL


def build(ask: HistoryAsk) -> ProviderRequest:
    if tiingo.is_index_like(ask.symbol):
        raise ProviderUnsupported(ask.provider, "indices, currencies and futures are not offered")
    today = new_york_today(ask.clock())
    return build_historical_request(ask.symbol, ask.period, ask.interval, today=today, base_url=ask.base_url)


def raise_if_unknown(reply: JsonReply, provider: str, symbol: str) -> None:
    detail = tiingo.not_found_detail(reply, provider)
    if detail is not None:
        raise ProviderSymbolNotFound(provider, f"{symbol} is unknown to Tiingo ({detail})")


def parse(reply: JsonReply, ask: HistoryAsk) -> HistoricalData:
    raise_if_unknown(reply, ask.provider, ask.symbol)
    return parse_historical_response(reply.payload, ask.provider, ask.symbol, ask.period, ask.interval)
