"""FMP historical prices: ``/stable/historical-price-eod/full?symbol=&from=&to=`` (daily bars, newest
first). Weekly and monthly bars are aggregated from those daily bars (first open, highest high, lowest
low, last close, summed volume) over whole weeks/months; intraday intervals are not offered.

FMP's daily bars are New York session dates; a bar is stamped at that session's 09:30 New York open
(in UTC), weekly/monthly bars at the open of the period's first weekday (Yahoo's and Tiingo's convention).
"""

from __future__ import annotations

from datetime import date, datetime

from chalicelib.adapters.providers.calls import HistoryAsk, JsonReply, ProviderRequest
from chalicelib.adapters.providers.fmp._common import FMP_BASE_URL
from chalicelib.adapters.providers.market_calendar import (
    MAX_START,
    SESSION_OPEN,
    SESSION_PERIODS,
    at_new_york,
    first_weekday,
    history_start,
    new_york_today,
    period_first_day,
)
from chalicelib.adapters.providers.values import expect_list, integer, number
from chalicelib.errors import ProviderNoData, ProviderParseError, ProviderSymbolNotFound, ProviderUnsupported
from chalicelib.models.market import DataKind, HistoricalData, Interval, Period, PriceBar

DAILY_INTERVALS = frozenset({Interval.D1, Interval.WK1, Interval.MO1})


def build_historical_request(
    symbol: str, period: Period, interval: Interval, *, today: date, base_url: str = FMP_BASE_URL
) -> ProviderRequest:
    """Daily bars from the start of the first whole week/month of the period (so that no aggregated bar
    is cut short at the start), to today. Raises ProviderUnsupported (vendor ``fmp``) for intraday."""
    if interval not in DAILY_INTERVALS:
        raise ProviderUnsupported("fmp", f"{interval.value} bars are not offered (daily, weekly, monthly only)")
    start = history_start(period, today)
    if start != MAX_START:
        start = period_first_day(start, interval)
    return ProviderRequest(
        url=f"{base_url}/stable/historical-price-eod/full",
        params={"symbol": symbol, "from": start.isoformat(), "to": today.isoformat()},
    )


def _opening(day: date) -> datetime:
    """A bar's timestamp: the open of the session its period starts with."""
    return at_new_york(first_weekday(day), SESSION_OPEN)


def _session_date(value: object, provider: str) -> date:
    if not isinstance(value, str):
        raise ProviderParseError(provider, f"expected a date string, got {type(value).__name__}")
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError as exc:
        raise ProviderParseError(provider, f"unreadable date {value[:40]!r}") from exc


def _daily_bars(payload: object, provider: str, symbol: str) -> list[tuple[date, PriceBar]]:
    """The bars with a close, oldest first, from either shape: stable's flat array, or v3's
    ``{symbol, historical: [...]}``. ``[]`` (stable) and ``{}`` (v3) mean FMP does not know the symbol."""
    if payload == [] or payload == {}:
        raise ProviderSymbolNotFound(provider, f"{symbol} is unknown to FMP (empty answer)")
    if isinstance(payload, dict):
        if "historical" not in payload:
            raise ProviderParseError(provider, "historical prices: an object without 'historical'")
        payload = payload["historical"]
    daily: list[tuple[date, PriceBar]] = []
    for item in expect_list(payload, provider, "historical prices"):
        close = number(item.get("close"))
        if close is None:
            continue
        day = _session_date(item.get("date"), provider)
        daily.append(
            (
                day,
                PriceBar(
                    timestamp=_opening(day),
                    open=number(item.get("open")),
                    high=number(item.get("high")),
                    low=number(item.get("low")),
                    close=close,
                    adj_close=number(item.get("adjClose")),  # v3 only; stable eod/full has none
                    volume=integer(item.get("volume")),
                ),
            )
        )
    daily.sort(key=lambda dated: dated[0])  # FMP sends newest first
    return daily


def _aggregate(bars: list[tuple[date, PriceBar]], interval: Interval) -> list[PriceBar]:
    """One bar per week or month, stamped with its period's first session: first open, highest high,
    lowest low, last close, summed volume (None if a day lacks it), last adjusted close. Daily bars pass
    through."""
    if interval is Interval.D1:
        return [bar for _, bar in bars]
    groups: dict[date, list[PriceBar]] = {}
    for day, bar in bars:
        groups.setdefault(period_first_day(day, interval), []).append(bar)
    out: list[PriceBar] = []
    for start, days in groups.items():
        highs = [d.high for d in days if d.high is not None]
        lows = [d.low for d in days if d.low is not None]
        volumes = [d.volume for d in days]
        merged = PriceBar(
            timestamp=_opening(start),
            open=days[0].open,
            high=max(highs) if highs else None,
            low=min(lows) if lows else None,
            close=days[-1].close,
            adj_close=days[-1].adj_close,
            volume=None if any(v is None for v in volumes) else sum(v for v in volumes if v is not None),
        )
        out.append(merged)
    return out


def parse_historical_response(
    payload: object, provider: str, symbol: str, period: Period, interval: Interval
) -> HistoricalData:
    if interval not in DAILY_INTERVALS:
        raise ProviderUnsupported(provider, f"{interval.value} bars are not offered")
    daily = _daily_bars(payload, provider, symbol)
    if period in SESSION_PERIODS and interval is Interval.D1:
        daily = daily[-SESSION_PERIODS[period] :]
    bars = _aggregate(daily, interval)
    if not bars:
        raise ProviderNoData(provider, f"no {interval.value} bars with a close for {symbol} over {period.value}")
    return HistoricalData(symbol=symbol, period=period, interval=interval, bars=bars, as_of=bars[-1].timestamp)


KIND = DataKind.HISTORICAL


def build(ask: HistoryAsk) -> ProviderRequest:
    today = new_york_today(ask.clock())
    return build_historical_request(ask.symbol, ask.period, ask.interval, today=today, base_url=ask.base_url)


def parse(reply: JsonReply, ask: HistoryAsk) -> HistoricalData:
    return parse_historical_response(reply.payload, ask.provider, ask.symbol, ask.period, ask.interval)
