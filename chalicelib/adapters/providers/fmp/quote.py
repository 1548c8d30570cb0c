"""FMP quotes (also indices ``^GSPC`` and the sector ETFs): one symbol -> ``/stable/quote?symbol=``;
several -> ``/stable/batch-quote?symbols=A,B,C``. Both answer an array of the same quote object. FMP
sells batch-quote on paid plans only (free keys get a 402), so a lone symbol uses the free single quote.
Unknown symbols are simply absent from the array (HTTP 200 ``[]`` when all are unknown)."""

from __future__ import annotations

from collections.abc import Sequence

from chalicelib.adapters.providers.calls import Answered, JsonReply, ProviderRequest, QuoteAsk
from chalicelib.adapters.providers.fmp._common import FMP_BASE_URL, fmp_epoch, is_servable_symbol, quote_fields
from chalicelib.adapters.providers.values import expect_list, text
from chalicelib.errors import ProviderParseError
from chalicelib.models.market import DataKind, Quote

KIND = DataKind.QUOTE
# Symbols per batch-quote call. FMP documents no maximum; clients in the wild send 50-150. 100 keeps
# the URL near 1.3 KB (100 x up to 12 characters + commas, far below the ~8 KB proxies accept) and the
# answer near 50 KB (about 450 bytes per quote object), and makes 500 quotes five calls.
QUOTE_BATCH_SIZE = 100


def build_quote_request(symbols: Sequence[str], *, base_url: str = FMP_BASE_URL) -> ProviderRequest:
    if not symbols:
        raise ValueError("at least one symbol is required")
    if len(symbols) > QUOTE_BATCH_SIZE:
        raise ValueError(f"at most {QUOTE_BATCH_SIZE} symbols per request")
    if len(symbols) == 1:
        return ProviderRequest(url=f"{base_url}/stable/quote", params={"symbol": symbols[0]})
    return ProviderRequest(url=f"{base_url}/stable/batch-quote", params={"symbols": ",".join(symbols)})


def build(ask: QuoteAsk) -> ProviderRequest | Answered[dict[str, Quote]]:
    return build_quote_request(ask.symbols, base_url=ask.base_url) if ask.symbols else Answered({})


def parse(reply: JsonReply, ask: QuoteAsk) -> dict[str, Quote]:
    """Quote objects keyed by symbol. Items without a price or FMP's ``timestamp`` cannot be served as a
    dated quote and are left out (the chain asks another provider for those symbols)."""
    quotes: dict[str, Quote] = {}
    for item in expect_list(reply.payload, ask.provider, "quote"):
        symbol = text(item.get("symbol"))
        if symbol is None:
            raise ProviderParseError(ask.provider, "quote item without a symbol")
        fields = quote_fields(item)
        as_of = fmp_epoch(item.get("timestamp"))
        if fields["price"] is not None and as_of is not None and is_servable_symbol(symbol):
            quotes[symbol] = Quote(symbol=symbol, as_of=as_of, **fields)
    return quotes
