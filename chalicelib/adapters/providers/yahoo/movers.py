"""Yahoo market movers: v1 ``/v1/finance/screener/predefined/saved?scrIds=day_gainers|day_losers|most_actives``.
Its ``finance.result[0].quotes[]`` are v7 quote objects, in Yahoo's order."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from chalicelib.adapters.providers.calls import JsonReply, MoversAsk, ProviderRequest
from chalicelib.adapters.providers.values import json_object
from chalicelib.adapters.providers.yahoo._common import DEFAULT_BASE_URL, error_object
from chalicelib.adapters.providers.yahoo.quote import quote_from_item
from chalicelib.errors import ProviderParseError, ProviderUnavailable, ProviderUnsupported
from chalicelib.models.market import DataKind, MoverType, Quote

SCREENER_IDS: Mapping[MoverType, str] = {
    MoverType.GAINERS: "day_gainers",
    MoverType.LOSERS: "day_losers",
    MoverType.ACTIVES: "most_actives",
}


def build_movers_request(mover_type: MoverType, limit: int, *, base_url: str = DEFAULT_BASE_URL) -> ProviderRequest:
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/v1/finance/screener/predefined/saved",
        params={"scrIds": SCREENER_IDS[mover_type], "count": str(limit), "formatted": "false"},
    )


def parse_movers_response(payload: object, provider: str, limit: int, *, now: datetime) -> list[Quote]:
    body = json_object(payload, provider)
    finance = body.get("finance")
    if not isinstance(finance, dict):
        raise ProviderParseError(provider, "no finance in screener payload")
    error = error_object(body, "finance")
    if error is not None:
        code, description = error
        raise ProviderUnavailable(provider, f"Yahoo screener error: {description or code}")
    results = finance.get("result")
    if not isinstance(results, list):
        raise ProviderParseError(provider, "screener result is not a list")
    if not results:
        return []
    first = results[0]
    items = first.get("quotes") if isinstance(first, dict) else None
    if not isinstance(items, list):
        raise ProviderParseError(provider, "screener result[0].quotes is not a list")
    movers: list[Quote] = []
    for item in items:
        if not isinstance(item, dict):
            raise ProviderParseError(provider, "screener quote is not an object")
        quote = quote_from_item(item, provider, now=now)
        if quote is not None:
            movers.append(quote)
    return movers[:limit]


KIND = DataKind.MOVERS


def build(ask: MoversAsk) -> ProviderRequest:
    try:
        return build_movers_request(ask.mover_type, ask.limit, base_url=ask.base_url)
    except ValueError as exc:
        raise ProviderUnsupported(ask.provider, str(exc)) from None


def parse(reply: JsonReply, ask: MoversAsk) -> list[Quote]:
    return parse_movers_response(reply.payload, ask.provider, ask.limit, now=ask.clock())
