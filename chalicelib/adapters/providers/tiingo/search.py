"""Tiingo symbol search: ``/tiingo/utilities/search?query=&limit=``."""

from __future__ import annotations

from collections.abc import Mapping

from chalicelib.adapters.providers.calls import JsonReply, ProviderRequest, SearchAsk
from chalicelib.adapters.providers.tiingo._common import TIINGO_BASE_URL, expect_list, headers
from chalicelib.adapters.providers.values import text
from chalicelib.models.market import DataKind, SearchResult

# Tiingo's assetType spellings onto the standard lower-case types (as Yahoo's quoteType lower-cased).
ASSET_TYPES: Mapping[str, str] = {"stock": "equity", "etf": "etf", "mutual fund": "mutualfund"}


def build_search_request(query: str, limit: int, *, base_url: str = TIINGO_BASE_URL) -> ProviderRequest:
    stripped = query.strip()
    if not stripped:
        raise ValueError("query must not be empty")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return ProviderRequest(
        url=f"{base_url}/tiingo/utilities/search", params={"query": stripped, "limit": str(limit)}, headers=headers()
    )


def parse_search_response(payload: object, provider: str, limit: int) -> list[SearchResult]:
    """Items (ticker, name, assetType, isActive, ...). Inactive (delisted) tickers are left out: nothing
    can be quoted for them."""
    results: list[SearchResult] = []
    for item in expect_list(payload, provider, "search"):
        ticker = text(item.get("ticker"))
        if ticker is None or item.get("isActive") is False:
            continue
        asset_type = text(item.get("assetType"))
        results.append(
            SearchResult(
                symbol=ticker.upper(),
                name=text(item.get("name")),
                asset_type=ASSET_TYPES.get(asset_type.lower(), asset_type.lower()) if asset_type else None,
            )
        )
    return results[:limit]


KIND = DataKind.SEARCH


def build(ask: SearchAsk) -> ProviderRequest:
    return build_search_request(ask.query, ask.limit, base_url=ask.base_url)


def parse(reply: JsonReply, ask: SearchAsk) -> list[SearchResult]:
    return parse_search_response(reply.payload, ask.provider, ask.limit)
