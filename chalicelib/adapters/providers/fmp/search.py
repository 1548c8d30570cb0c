"""FMP symbol search: ``/stable/search-symbol?query=&limit=``, answering
``[{symbol, name, currency, exchangeFullName, exchange}]`` (FMP docs; no recording exists)."""

from __future__ import annotations

from chalicelib.adapters.providers.calls import JsonReply, ProviderRequest, SearchAsk
from chalicelib.adapters.providers.fmp._common import FMP_BASE_URL, expect_list
from chalicelib.adapters.providers.values import first_value, text
from chalicelib.models.market import DataKind, SearchResult

SEARCH_MAX_LIMIT = 100


def build_search_request(query: str, limit: int, *, base_url: str = FMP_BASE_URL) -> ProviderRequest:
    stripped = query.strip()
    if not stripped:
        raise ValueError("query must not be empty")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/stable/search-symbol", params={"query": stripped, "limit": str(min(limit, SEARCH_MAX_LIMIT))}
    )


def parse_search_response(payload: object, provider: str, limit: int) -> list[SearchResult]:
    results: list[SearchResult] = []
    for item in expect_list(payload, provider, "search"):
        symbol = text(item.get("symbol"))
        if symbol is None:
            continue
        results.append(
            SearchResult(
                symbol=symbol,
                name=text(item.get("name")),
                exchange=text(first_value(item, "exchange", "exchangeShortName", "exchangeFullName")),
            )
        )
    return results[:limit]


KIND = DataKind.SEARCH


def build(ask: SearchAsk) -> ProviderRequest:
    return build_search_request(ask.query, ask.limit, base_url=ask.base_url)


def parse(reply: JsonReply, ask: SearchAsk) -> list[SearchResult]:
    return parse_search_response(reply.payload, ask.provider, ask.limit)
