"""Tiingo end-of-day quote: ``/tiingo/daily/{ticker}/prices?startDate=<today-14d>``.

Tiingo's IEX top-of-book has no genuine recording to test against, so the quote is end-of-day: the
last daily bar's close, with the bar before as the previous close. ``as_of`` is that bar's session
close (16:00 New York), never the retrieval time.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from chalicelib.adapters.providers.calls import Answered, JsonReply, ProviderRequest, QuoteAsk
from chalicelib.adapters.providers.market_calendar import SESSION_CLOSE, at_new_york, new_york_today
from chalicelib.adapters.providers.tiingo import _common as tiingo
from chalicelib.adapters.providers.values import integer, number
from chalicelib.models.market import DataKind, Quote

# The quote reads the last two daily bars out of a two-week window (long weekends, holidays).
QUOTE_LOOKBACK_DAYS = 14


def build_quote_request(symbol: str, *, today: date, base_url: str = tiingo.TIINGO_BASE_URL) -> ProviderRequest:
    start = today - timedelta(days=QUOTE_LOOKBACK_DAYS)
    return tiingo.symbol_request(base_url, "/tiingo/daily/{ticker}/prices", symbol, {"startDate": start.isoformat()})


def daily_rows(payload: object, provider: str) -> list[tuple[date, float, dict[str, Any]]]:
    """(session date, close, bar) for every bar with a close, oldest first."""
    rows: list[tuple[date, float, dict[str, Any]]] = []
    for item in tiingo.expect_list(payload, provider, "daily prices"):
        close = number(item.get("close"))
        if close is not None:
            rows.append((tiingo.session_date(item.get("date"), provider), close, item))
    rows.sort(key=lambda row: row[0])
    return rows


def parse(reply: JsonReply, ask: QuoteAsk) -> dict[str, Quote]:
    """An end-of-day quote from the daily bars; an empty array (nothing recent) or Tiingo's unknown-ticker
    404 gives no quote (unknown symbols are absent, never an error)."""
    if tiingo.not_found_detail(reply, ask.provider) is not None:
        return {}
    rows = daily_rows(reply.payload, ask.provider)
    if not rows:
        return {}
    day, price, last = rows[-1]
    previous_close: float | None = None
    if len(rows) > 1:
        previous_close = rows[-2][1]
        # A split effective on the last session (splitFactor != 1) makes the raw previous close
        # incomparable; put it on the new share basis, as quote feeds do.
        split = number(last.get("splitFactor"))
        if split is not None and split not in (0.0, 1.0):
            previous_close = previous_close / split
    change = price - previous_close if previous_close is not None else None
    change_percent = change / previous_close * 100 if change is not None and previous_close else None
    quote = Quote(
        symbol=ask.symbols[0],
        price=price,
        change=change,
        change_percent=change_percent,
        volume=integer(last.get("volume")),
        previous_close=previous_close,
        open=number(last.get("open")),
        day_high=number(last.get("high")),
        day_low=number(last.get("low")),
        # End-of-day data: the bar's date is a New York session, and its close is final at 16:00
        # America/New_York; that instant (in UTC) is when this price was current.
        as_of=at_new_york(day, SESSION_CLOSE),
    )
    return {quote.symbol: quote}


KIND = DataKind.QUOTE


def build(ask: QuoteAsk) -> ProviderRequest | Answered[dict[str, Quote]]:
    if not ask.symbols:
        return Answered({})
    if len(ask.symbols) > 1:
        raise ValueError(f"Tiingo quotes one symbol per call, got {len(ask.symbols)}")
    if tiingo.is_index_like(ask.symbols[0]):
        return Answered({})  # no such ticker at Tiingo; asking would only spend quota
    return build_quote_request(ask.symbols[0], today=new_york_today(ask.clock()), base_url=ask.base_url)
