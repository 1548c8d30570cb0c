"""Alpha Vantage OVERVIEW (all strings); ``{}`` means an unknown symbol.

OVERVIEW carries no time of its own ("LatestQuarter" dates the financial statements, while the market
capitalisation is refreshed daily), so ``as_of`` is the time of retrieval."""

from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.adapters.providers.alpha_vantage._common import BASE_URL, base_params, require
from chalicelib.adapters.providers.calls import JsonReply, ProfileAsk, ProviderRequest
from chalicelib.adapters.providers.values import integer, text
from chalicelib.models.market import CompanyProfile, DataKind

KIND = DataKind.PROFILE
# OVERVIEW's string fields by the standard model's name.
_TEXT_FIELDS = {
    "name": "Name",
    "exchange": "Exchange",
    "currency": "Currency",
    "sector": "Sector",
    "industry": "Industry",
    "country": "Country",
    "website": "OfficialSite",
    "description": "Description",
}


def build_profile_request(symbol: str, *, base_url: str = BASE_URL) -> ProviderRequest:
    return ProviderRequest(url=base_url, params=base_params("OVERVIEW", symbol=symbol))


def parse_profile_response(payload: object, provider: str, *, symbol: str, now: datetime) -> CompanyProfile:
    body, _ = require(payload, "Symbol", provider, symbol_call=True)
    return CompanyProfile(
        symbol=symbol,
        **{field: text(body.get(key)) for field, key in _TEXT_FIELDS.items()},
        employees=integer(body.get("FullTimeEmployees"), strict=True),
        market_cap=integer(body.get("MarketCapitalization"), strict=True),
        as_of=now.astimezone(UTC),
    )


def build(ask: ProfileAsk) -> ProviderRequest:
    return build_profile_request(ask.symbol.strip().upper(), base_url=ask.base_url)


def parse(reply: JsonReply, ask: ProfileAsk) -> CompanyProfile:
    return parse_profile_response(reply.payload, ask.provider, symbol=ask.symbol.strip().upper(), now=ask.clock())
