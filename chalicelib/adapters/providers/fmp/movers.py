"""FMP market movers: ``/stable/biggest-gainers``, ``/stable/biggest-losers``, ``/stable/most-actives``.

The lists carry no time: each quote is dated by its own ``timestamp`` when present, else by this
adapter's clock when the answer arrived, which is when FMP's snapshot was at least that current."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from chalicelib.adapters.providers.calls import Answered, JsonReply, MoversAsk, ProviderRequest
from chalicelib.adapters.providers.fmp._common import (
    FMP_BASE_URL,
    expect_list,
    fmp_epoch,
    is_servable_symbol,
    quote_fields,
)
from chalicelib.adapters.providers.values import text
from chalicelib.models.market import DataKind, MoverType, Quote

MOVER_PATHS: Mapping[MoverType, str] = {
    MoverType.GAINERS: "/stable/biggest-gainers",
    MoverType.LOSERS: "/stable/biggest-losers",
    MoverType.ACTIVES: "/stable/most-actives",
}


def build_movers_request(mover_type: MoverType, *, base_url: str = FMP_BASE_URL) -> ProviderRequest:
    return ProviderRequest(url=f"{base_url}{MOVER_PATHS[mover_type]}", params={})


def parse_movers_response(payload: object, provider: str, limit: int, *, received_at: datetime) -> list[Quote]:
    """Gainers/losers/actives, in FMP's order, at most ``limit``. Items without a price, or whose symbol
    is not a ticker the service can serve (warrants and units longer than a ticker), are skipped."""
    movers: list[Quote] = []
    for item in expect_list(payload, provider, "movers"):
        if len(movers) >= limit:
            break
        symbol = text(item.get("symbol"))
        fields = quote_fields(item)
        if symbol is None or fields["price"] is None or not is_servable_symbol(symbol):
            continue
        movers.append(Quote(symbol=symbol, as_of=fmp_epoch(item.get("timestamp")) or received_at, **fields))
    return movers


KIND = DataKind.MOVERS


def build(ask: MoversAsk) -> ProviderRequest | Answered[list[Quote]]:
    if ask.limit < 1:
        return Answered([])
    return build_movers_request(ask.mover_type, base_url=ask.base_url)


def parse(reply: JsonReply, ask: MoversAsk) -> list[Quote]:
    return parse_movers_response(reply.payload, ask.provider, ask.limit, received_at=ask.clock())
