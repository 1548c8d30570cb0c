"""Yahoo symbol search: v1 ``/v1/finance/search?q=`` (its ``quotes[]``)."""

from __future__ import annotations

from chalicelib.adapters.providers.calls import JsonReply, ProviderRequest, SearchAsk
from chalicelib.adapters.providers.values import first_text
from chalicelib.adapters.providers.yahoo._common import DEFAULT_BASE_URL, search_body
from chalicelib.errors import ProviderParseError, ProviderUnsupported
from chalicelib.models.market import DataKind, SearchResult


def build_search_request(query: str, limit: int, *, base_url: str = DEFAULT_BASE_URL) -> ProviderRequest:
    if not query or not query.strip():
        raise ValueError("a search query is required")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/v1/finance/search",
        params={"q": query.strip(), "quotesCount": str(limit), "newsCount": "0"},
    )


def parse_search_response(payload: object, provider: str, limit: int) -> list[SearchResult]:
    """``quotes[]`` onto SearchResult. Entries without a symbol (Yahoo mixes in Crunchbase companies with
    ``isYahooFinance: false``) are not instruments and are left out."""
    items = search_body(payload, provider).get("quotes", [])
    if not isinstance(items, list):
        raise ProviderParseError(provider, "search quotes is not a list")
    results: list[SearchResult] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("symbol"), str) or not item["symbol"]:
            continue
        asset_type = first_text(item, "quoteType", "typeDisp")
        results.append(
            SearchResult(
                symbol=item["symbol"],
                name=first_text(item, "longname", "shortname"),
                exchange=first_text(item, "exchDisp", "exchange"),
                asset_type=asset_type.lower() if asset_type else None,
                sector=first_text(item, "sector", "sectorDisp"),
            )
        )
    return results[:limit]


KIND = DataKind.SEARCH


def build(ask: SearchAsk) -> ProviderRequest:
    try:
        return build_search_request(ask.query, ask.limit, base_url=ask.base_url)
    except ValueError as exc:
        raise ProviderUnsupported(ask.provider, str(exc)) from None


def parse(reply: JsonReply, ask: SearchAsk) -> list[SearchResult]:
    return parse_search_response(reply.payload, ask.provider, ask.limit)
