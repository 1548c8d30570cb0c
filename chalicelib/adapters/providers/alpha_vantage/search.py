"""Alpha Vantage SYMBOL_SEARCH (``bestMatches``, best first)."""

from __future__ import annotations

from chalicelib.adapters.providers.alpha_vantage._common import base_params, fields, require
from chalicelib.adapters.providers.calls import Answered, JsonReply, ProviderRequest, SearchAsk
from chalicelib.adapters.providers.values import text
from chalicelib.errors import ProviderParseError
from chalicelib.models.market import DataKind, SearchResult


def parse(reply: JsonReply, ask: SearchAsk) -> list[SearchResult]:
    """At most ``limit`` results. Alpha Vantage gives a region ("United States"), not an exchange, so
    ``exchange`` stays empty; the type is lower-cased ("Equity" -> "equity", "ETF" -> "etf")."""
    provider, limit = ask.provider, ask.limit
    _, matches = require(reply.payload, "bestMatches", provider, symbol_call=False)
    if not isinstance(matches, list):
        raise ProviderParseError(provider, "'bestMatches' is not a list")
    results: list[SearchResult] = []
    for raw in matches[: max(limit, 0)]:
        if not isinstance(raw, dict):
            raise ProviderParseError(provider, "search match is not an object")
        item = fields(raw)
        symbol = text(item.get("symbol"))
        if symbol is None:
            continue
        asset_type = text(item.get("type"))
        results.append(
            SearchResult(
                symbol=symbol, name=text(item.get("name")), asset_type=asset_type.lower() if asset_type else None
            )
        )
    return results


KIND = DataKind.SEARCH


def build(ask: SearchAsk) -> ProviderRequest | Answered[list[SearchResult]]:
    if ask.limit < 1 or not ask.query.strip():
        return Answered([])
    return ProviderRequest(url=ask.base_url, params=base_params("SYMBOL_SEARCH", keywords=ask.query.strip()))
