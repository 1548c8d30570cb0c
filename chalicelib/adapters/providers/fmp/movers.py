"""FMP market movers: ``/stable/biggest-gainers``, ``/stable/biggest-losers``, ``/stable/most-actives``.

The lists carry no time: each quote is dated by its own ``timestamp`` when present, else by this
adapter's clock when the answer arrived, which is when FMP's snapshot was at least that current."""

from __future__ import annotations

from collections.abc import Mapping

from chalicelib.adapters.providers.calls import Answered, JsonReply, MoversAsk, ProviderRequest
from chalicelib.adapters.providers.fmp._common import fmp_epoch, is_servable_symbol, quote_fields
from chalicelib.adapters.providers.values import expect_list, text
from chalicelib.models.market import DataKind, MoverType, Quote

KIND = DataKind.MOVERS
MOVER_PATHS: Mapping[MoverType, str] = {
    MoverType.GAINERS: "/stable/biggest-gainers",
    MoverType.LOSERS: "/stable/biggest-losers",
    MoverType.ACTIVES: "/stable/most-actives",
}


def build(ask: MoversAsk) -> ProviderRequest | Answered[list[Quote]]:
    if ask.limit < 1:
        return Answered([])
    return ProviderRequest(url=f"{ask.base_url}{MOVER_PATHS[ask.mover_type]}", params={})


def parse(reply: JsonReply, ask: MoversAsk) -> list[Quote]:
    """Gainers/losers/actives, in FMP's order, at most ``limit``. Items without a price, or whose symbol
    is not a ticker the service can serve (warrants and units longer than a ticker), are skipped."""
    received_at = ask.clock()
    movers: list[Quote] = []
    for item in expect_list(reply.payload, ask.provider, "movers"):
        if len(movers) >= ask.limit:
            break
        symbol = text(item.get("symbol"))
        fields = quote_fields(item)
        if symbol is not None and fields["price"] is not None and is_servable_symbol(symbol):
            movers.append(Quote(symbol=symbol, as_of=fmp_epoch(item.get("timestamp")) or received_at, **fields))
    return movers
