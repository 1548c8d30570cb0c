"""Yahoo quotes (also indices and the sector ETFs): v7 ``/v7/finance/quote?symbols=A,B,...`` (many
symbols per request). The screener's quotes are v7 quote objects too (``quote_from_item``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from chalicelib.adapters.providers.calls import JsonReply, ProviderRequest, QuoteAsk
from chalicelib.adapters.providers.values import epoch, first_text, json_number, json_object
from chalicelib.errors import ProviderParseError, ProviderSymbolNotFound, ProviderUnavailable
from chalicelib.models.market import DataKind, Quote

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
# Yahoo answers long symbol lists, but URLs past ~8 KB get refused by intermediaries.
MAX_SYMBOLS_PER_QUOTE_REQUEST = 200
# v7 quote fields read as plain numbers, by the standard model's name.
_NUMBER_FIELDS = {
    "change": "regularMarketChange",
    "change_percent": "regularMarketChangePercent",
    "previous_close": "regularMarketPreviousClose",
    "open": "regularMarketOpen",
    "day_high": "regularMarketDayHigh",
    "day_low": "regularMarketDayLow",
    "fifty_two_week_high": "fiftyTwoWeekHigh",
    "fifty_two_week_low": "fiftyTwoWeekLow",
}


def build_quote_request(symbols: Sequence[str]) -> ProviderRequest:
    if not symbols:
        raise ValueError("at least one symbol is required")
    if len(symbols) > MAX_SYMBOLS_PER_QUOTE_REQUEST:
        raise ValueError(f"at most {MAX_SYMBOLS_PER_QUOTE_REQUEST} symbols per request")
    return ProviderRequest(
        url=QUOTE_URL,
        params={"symbols": ",".join(symbols), "formatted": "false", "lang": "en-US", "region": "US"},
    )


def _integer(item: Mapping[str, Any], key: str) -> int | None:
    value = json_number(item.get(key))
    return int(value) if value is not None else None


def quote_from_item(item: Mapping[str, Any], provider: str, *, now: datetime) -> Quote | None:
    """A v7 quote object (also the screener's) onto Quote; None when it carries no price."""
    symbol = item.get("symbol")
    if not isinstance(symbol, str):
        raise ProviderParseError(provider, "quote item without a symbol")
    price = json_number(item.get("regularMarketPrice"))
    if price is None:
        return None
    return Quote(
        symbol=symbol,
        price=price,
        **{field: json_number(item.get(key)) for field, key in _NUMBER_FIELDS.items()},
        volume=_integer(item, "regularMarketVolume"),
        market_cap=_integer(item, "marketCap"),
        name=first_text(item, "longName", "shortName", "displayName"),
        currency=first_text(item, "currency"),
        exchange=first_text(item, "fullExchangeName", "exchange"),
        market_state=first_text(item, "marketState"),
        as_of=epoch(item.get("regularMarketTime")) or now,
    )


def parse_quote_response(
    payload: object, provider: str, *, now: datetime | None = None, requested: Sequence[str] = ()
) -> dict[str, Quote]:
    """Map a v7 quote payload onto Quote models, keyed by symbol. Items without a price are skipped
    (Yahoo lists some instruments it has no market data for); unknown symbols are simply absent.

    A "Not Found" error beside a result list is about symbols left out of it, not about the call: for a
    single requested symbol with an empty result it is ProviderSymbolNotFound carrying the description
    (the reason reaches the 404); for a batch it is ignored (missing symbols are unknown, as always).
    Any other error object is the call failing (ProviderUnavailable)."""
    body = json_object(payload, provider)
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


KIND = DataKind.QUOTE


def build(ask: QuoteAsk) -> ProviderRequest:
    return build_quote_request(ask.symbols)


def parse(reply: JsonReply, ask: QuoteAsk) -> dict[str, Quote]:
    return parse_quote_response(reply.payload, ask.provider, now=ask.clock(), requested=ask.symbols)
