"""Yahoo historical bars: v8 ``/v8/finance/chart/{symbol}?range=&interval=`` (parallel arrays, epoch seconds).

Chart errors: 404 "No data found, symbol may be delisted" → ProviderSymbolNotFound; 400 "Data doesn't
exist for startDate" → ProviderNoData; 422 → ProviderUnsupported (in a 200 body or an HTTP error body).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from chalicelib.adapters.providers.calls import HistoryAsk, JsonReply, ProviderRequest
from chalicelib.adapters.providers.values import epoch, first_text, json_number
from chalicelib.adapters.providers.yahoo._common import DEFAULT_BASE_URL, envelope, path_symbol
from chalicelib.errors import (
    ProviderError,
    ProviderNoData,
    ProviderParseError,
    ProviderSymbolNotFound,
    ProviderUnavailable,
    ProviderUnsupported,
)
from chalicelib.models.market import DataKind, HistoricalData, Interval, Period, PriceBar

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
        url=f"{base_url}/v8/finance/chart/{path_symbol(symbol)}",
        params={
            "range": period.value,
            "interval": CHART_INTERVALS[interval],
            "includeAdjustedClose": "true",
            "events": "div,split",
        },
    )


def chart_error(status: int, code: str, description: str, provider: str) -> ProviderError:
    """Yahoo's chart error object onto a typed error (shared by 200 bodies and HTTP error bodies)."""
    if status == 404 or code == "Not Found":
        return ProviderSymbolNotFound(provider, f"Yahoo: {description or code}")
    if status == 400 or code == "Bad Request":
        return ProviderNoData(provider, f"Yahoo: {description or code}")
    if status == 422 or code == "Unprocessable Entity":
        return ProviderUnsupported(provider, f"Yahoo: {description or code}")
    return ProviderUnavailable(provider, f"Yahoo chart error: {description or code}")


def _bar_value(series: Mapping[str, Any], key: str, index: int) -> float | None:
    values = series.get(key)
    if not isinstance(values, list) or index >= len(values):
        return None
    return json_number(values[index])


def _first_object(container: object) -> dict[str, Any]:
    """``container[0]`` when ``container`` is a list starting with an object, else {}."""
    if isinstance(container, list) and container and isinstance(container[0], dict):
        return container[0]
    return {}


def parse_historical_response(
    payload: object, provider: str, *, symbol: str, period: Period, interval: Interval
) -> HistoricalData:
    """v8 chart onto HistoricalData: ``timestamp[]`` (epoch seconds, bar open) indexes the parallel
    ``indicators.quote[0]`` arrays and ``indicators.adjclose[0].adjclose``. Bars whose close is null are
    dropped; no ``timestamp`` key (a weekend's 1m range) or no bar left → ProviderNoData."""
    chart, error = envelope(payload, provider, "chart")
    if error is not None:
        raise chart_error(200, *error, provider)
    results = chart.get("result")
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise ProviderParseError(provider, "chart.result is not a non-empty list")
    result: dict[str, Any] = results[0]
    raw_meta = result.get("meta")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    timestamps = result.get("timestamp")
    if timestamps is None or timestamps == []:
        raise ProviderNoData(provider, f"Yahoo has no {interval.value} bars for {symbol} over {period.value}")
    if not isinstance(timestamps, list):
        raise ProviderParseError(provider, "chart timestamp is not a list")
    indicators = result.get("indicators")
    indicators = indicators if isinstance(indicators, dict) else {}
    series = _first_object(indicators.get("quote"))
    if not series:
        raise ProviderParseError(provider, "chart indicators.quote is missing")
    closes = series.get("close")
    if not isinstance(closes, list) or len(closes) != len(timestamps):
        raise ProviderParseError(provider, "chart close[] does not match timestamp[]")
    adjusted = _first_object(indicators.get("adjclose"))
    bars: list[PriceBar] = []
    for index, stamp in enumerate(timestamps):
        close = json_number(closes[index])
        if close is None:
            continue
        opened_at = epoch(stamp)
        if opened_at is None:
            raise ProviderParseError(provider, f"chart timestamp {stamp!r} is not epoch seconds")
        volume = _bar_value(series, "volume", index)
        bars.append(
            PriceBar(
                timestamp=opened_at,
                open=_bar_value(series, "open", index),
                high=_bar_value(series, "high", index),
                low=_bar_value(series, "low", index),
                close=close,
                adj_close=_bar_value(adjusted, "adjclose", index),
                volume=int(volume) if volume is not None else None,
            )
        )
    if not bars:
        raise ProviderNoData(provider, f"Yahoo has no {interval.value} closes for {symbol} over {period.value}")
    bars.sort(key=lambda bar: bar.timestamp)
    return HistoricalData(
        symbol=symbol,
        period=period,
        interval=interval,
        currency=first_text(meta, "currency"),
        bars=bars,
        as_of=bars[-1].timestamp,
    )


KIND = DataKind.HISTORICAL


def build(ask: HistoryAsk) -> ProviderRequest:
    return build_historical_request(ask.symbol, ask.period, ask.interval, now=ask.clock(), base_url=ask.base_url)


def parse(reply: JsonReply, ask: HistoryAsk) -> HistoricalData:
    return parse_historical_response(
        reply.payload, ask.provider, symbol=ask.symbol, period=ask.period, interval=ask.interval
    )
