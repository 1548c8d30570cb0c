"""Yahoo market movers: v1 ``/v1/finance/screener/predefined/saved?scrIds=day_gainers|day_losers|most_actives``.
Its ``finance.result[0].quotes[]`` are v7 quote objects, in Yahoo's order."""

from __future__ import annotations

from collections.abc import Mapping

from chalicelib.adapters.providers.calls import JsonReply, MoversAsk, ProviderRequest
from chalicelib.adapters.providers.yahoo._common import envelope
from chalicelib.adapters.providers.yahoo.quote import quote_from_item
from chalicelib.errors import ProviderParseError, ProviderUnavailable, ProviderUnsupported
from chalicelib.models.market import DataKind, MoverType, Quote

KIND = DataKind.MOVERS
SCREENER_IDS: Mapping[MoverType, str] = {
    MoverType.GAINERS: "day_gainers",
    MoverType.LOSERS: "day_losers",
    MoverType.ACTIVES: "most_actives",
}


def build(ask: MoversAsk) -> ProviderRequest:
    if ask.limit < 1:
        raise ProviderUnsupported(ask.provider, "limit must be at least 1")
    params = {"scrIds": SCREENER_IDS[ask.mover_type], "count": str(ask.limit), "formatted": "false"}
    return ProviderRequest(url=f"{ask.base_url}/v1/finance/screener/predefined/saved", params=params)


def parse(reply: JsonReply, ask: MoversAsk) -> list[Quote]:
    finance, error = envelope(reply.payload, ask.provider, "finance")
    if error is not None:
        raise ProviderUnavailable(ask.provider, f"Yahoo screener error: {error[1] or error[0]}")
    results = finance.get("result")
    if not isinstance(results, list):
        raise ProviderParseError(ask.provider, "screener result is not a list")
    if not results:
        return []
    items = results[0].get("quotes") if isinstance(results[0], dict) else None
    if not isinstance(items, list):
        raise ProviderParseError(ask.provider, "screener result[0].quotes is not a list")
    now = ask.clock()
    movers: list[Quote] = []
    for item in items:
        if not isinstance(item, dict):
            raise ProviderParseError(ask.provider, "screener quote is not an object")
        quote = quote_from_item(item, ask.provider, now=now)
        if quote is not None:
            movers.append(quote)
    return movers[: ask.limit]
