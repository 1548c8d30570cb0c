"""Yahoo symbol search: v1 ``/v1/finance/search?q=`` (its ``quotes[]``). Entries without a symbol (Yahoo
mixes in Crunchbase companies with ``isYahooFinance: false``) are not instruments and are left out."""

from __future__ import annotations

from chalicelib.adapters.providers.calls import JsonReply, ProviderRequest, SearchAsk
from chalicelib.adapters.providers.values import first_text
from chalicelib.adapters.providers.yahoo._common import checked_terms, search_body
from chalicelib.errors import ProviderParseError
from chalicelib.models.market import DataKind, SearchResult

KIND = DataKind.SEARCH


def build(ask: SearchAsk) -> ProviderRequest:
    query = checked_terms(ask.query, ask.limit, ask.provider)
    params = {"q": query, "quotesCount": str(ask.limit), "newsCount": "0"}
    return ProviderRequest(url=f"{ask.base_url}/v1/finance/search", params=params)


def _asset_type(item: dict[str, object]) -> str | None:
    found = first_text(item, "quoteType", "typeDisp")
    return found.lower() if found else None


def parse(reply: JsonReply, ask: SearchAsk) -> list[SearchResult]:
    items = search_body(reply.payload, ask.provider).get("quotes", [])
    if not isinstance(items, list):
        raise ProviderParseError(ask.provider, "search quotes is not a list")
    return [
        SearchResult(
            symbol=item["symbol"],
            name=first_text(item, "longname", "shortname"),
            exchange=first_text(item, "exchDisp", "exchange"),
            asset_type=_asset_type(item),
            sector=first_text(item, "sector", "sectorDisp"),
        )
        for item in items
        if isinstance(item, dict) and isinstance(item.get("symbol"), str) and item["symbol"]
    ][: ask.limit]
