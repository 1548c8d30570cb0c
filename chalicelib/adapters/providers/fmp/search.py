"""FMP symbol search: ``/stable/search-symbol?query=&limit=``, answering
``[{symbol, name, currency, exchangeFullName, exchange}]`` (FMP docs; no recording exists)."""

from __future__ import annotations

from chalicelib.adapters.providers.calls import JsonReply, ProviderRequest, SearchAsk, checked_query
from chalicelib.adapters.providers.fmp._common import FMP_BASE_URL
from chalicelib.adapters.providers.values import expect_list, first_value, text
from chalicelib.models.market import DataKind, SearchResult

KIND = DataKind.SEARCH
SEARCH_MAX_LIMIT = 100


def build_search_request(query: str, limit: int, *, base_url: str = FMP_BASE_URL) -> ProviderRequest:
    params = {"query": checked_query(query, limit), "limit": str(min(limit, SEARCH_MAX_LIMIT))}
    return ProviderRequest(url=f"{base_url}/stable/search-symbol", params=params)


def build(ask: SearchAsk) -> ProviderRequest:
    return build_search_request(ask.query, ask.limit, base_url=ask.base_url)


def parse(reply: JsonReply, ask: SearchAsk) -> list[SearchResult]:
    return [
        SearchResult(
            symbol=symbol,
            name=text(item.get("name")),
            exchange=text(first_value(item, "exchange", "exchangeShortName", "exchangeFullName")),
        )
        for item in expect_list(reply.payload, ask.provider, "search")
        if (symbol := text(item.get("symbol"))) is not None
    ][: ask.limit]
