"""Tiingo symbol search: ``/tiingo/utilities/search?query=&limit=``. Inactive (delisted) tickers are left
out: nothing can be quoted for them."""

from __future__ import annotations

from collections.abc import Mapping

from chalicelib.adapters.providers.calls import JsonReply, ProviderRequest, SearchAsk, checked_query
from chalicelib.adapters.providers.tiingo import _common as tiingo
from chalicelib.adapters.providers.values import text
from chalicelib.models.market import DataKind, SearchResult

KIND = DataKind.SEARCH
# Tiingo's assetType spellings onto the standard lower-case types (as Yahoo's quoteType lower-cased).
ASSET_TYPES: Mapping[str, str] = {"stock": "equity", "etf": "etf", "mutual fund": "mutualfund"}


def build(ask: SearchAsk) -> ProviderRequest:
    params = {"query": checked_query(ask.query, ask.limit), "limit": str(ask.limit)}
    return ProviderRequest(url=f"{ask.base_url}/tiingo/utilities/search", params=params, headers=tiingo.headers())


def _asset_type(value: object) -> str | None:
    found = text(value)
    return ASSET_TYPES.get(found.lower(), found.lower()) if found else None


def parse(reply: JsonReply, ask: SearchAsk) -> list[SearchResult]:
    return [
        SearchResult(symbol=ticker.upper(), name=text(item.get("name")), asset_type=_asset_type(item.get("assetType")))
        for item in tiingo.expect_list(reply.payload, ask.provider, "search")
        if (ticker := text(item.get("ticker"))) is not None and item.get("isActive") is not False
    ][: ask.limit]
