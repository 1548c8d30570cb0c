"""Alpha Vantage GLOBAL_QUOTE: exactly one symbol (the batch function, REALTIME_BULK_QUOTES, is premium)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from chalicelib.adapters.providers.alpha_vantage._common import base_params, fields, require
from chalicelib.adapters.providers.calls import Answered, JsonReply, ProviderRequest, QuoteAsk
from chalicelib.adapters.providers.market_calendar import SESSION_CLOSE, at_new_york
from chalicelib.adapters.providers.values import integer, json_object, number, text
from chalicelib.errors import ProviderParseError, ProviderSymbolNotFound
from chalicelib.models.market import DataKind, Quote


def parse_quote_response(payload: object, provider: str, *, symbol: str, now: datetime) -> Quote | None:
    """A GLOBAL_QUOTE payload as a Quote; None when Alpha Vantage does not know the symbol
    (``{"Global Quote": {}}``, ``{}`` or "Invalid API call")."""
    body = json_object(payload, provider)
    if not body:
        return None
    try:
        _, raw = require(body, "Global Quote", provider, symbol_call=True)
    except ProviderSymbolNotFound:
        return None
    if not isinstance(raw, dict):
        raise ProviderParseError(provider, "'Global Quote' is not an object")
    item = fields(raw)
    price = number(item.get("price"), strict=True)
    if price is None:
        return None
    trading_day = text(item.get("latest trading day"))
    if trading_day is None:
        raise ProviderParseError(provider, f"quote for {symbol!r} has no latest trading day")
    # GLOBAL_QUOTE names only the latest trading day (free keys get end-of-day data), so the quote is
    # stamped at that day's 16:00 New York close, in UTC. While that session is still open the price
    # is a delayed intraday one and the close lies in the future: then it is stamped "now", the
    # latest moment the price can have been current.
    closed_at = at_new_york(date.fromisoformat(trading_day), SESSION_CLOSE)
    return Quote(
        symbol=symbol,
        price=price,
        change=number(item.get("change"), strict=True),
        change_percent=number(item.get("change percent"), strict=True),
        volume=integer(item.get("volume"), strict=True),
        previous_close=number(item.get("previous close"), strict=True),
        open=number(item.get("open"), strict=True),
        day_high=number(item.get("high"), strict=True),
        day_low=number(item.get("low"), strict=True),
        as_of=min(closed_at, now.astimezone(UTC)),
    )


KIND = DataKind.QUOTE


def build(ask: QuoteAsk) -> ProviderRequest | Answered[dict[str, Quote]]:
    if len(ask.symbols) > 1:
        raise ValueError(f"Alpha Vantage quotes one symbol per request, got {len(ask.symbols)}")
    if not ask.symbols:
        return Answered({})
    symbol = ask.symbols[0].strip().upper()
    if symbol.startswith("^"):
        return Answered({})  # indices are not served by GLOBAL_QUOTE: absent, and no quota spent on them
    return ProviderRequest(url=ask.base_url, params=base_params("GLOBAL_QUOTE", symbol=symbol))


def parse(reply: JsonReply, ask: QuoteAsk) -> dict[str, Quote]:
    symbol = ask.symbols[0].strip().upper()
    quote = parse_quote_response(reply.payload, ask.provider, symbol=symbol, now=ask.clock())
    return {quote.symbol: quote} if quote is not None else {}
