"""FMP company profile: ``/stable/profile?symbol=`` (an array of one; ``[]`` for an unknown symbol).
FMP profiles carry no time: ``as_of`` is when the answer arrived."""

from __future__ import annotations

from datetime import datetime

from chalicelib.adapters.providers.calls import JsonReply, ProfileAsk, ProviderRequest
from chalicelib.adapters.providers.fmp._common import FMP_BASE_URL, expect_list
from chalicelib.adapters.providers.values import first_value, integer, text
from chalicelib.errors import ProviderSymbolNotFound
from chalicelib.models.market import CompanyProfile, DataKind


def build_profile_request(symbol: str, *, base_url: str = FMP_BASE_URL) -> ProviderRequest:
    return ProviderRequest(url=f"{base_url}/stable/profile", params={"symbol": symbol})


def parse_profile_response(payload: object, provider: str, symbol: str, *, received_at: datetime) -> CompanyProfile:
    items = expect_list(payload, provider, "profile")
    if not items:
        raise ProviderSymbolNotFound(provider, f"{symbol} is unknown to FMP (empty answer)")
    item = items[0]
    return CompanyProfile(
        symbol=symbol,
        name=text(first_value(item, "companyName", "name")),
        # v3: exchange is the long name, exchangeShortName the code; stable: exchange is the code.
        exchange=text(first_value(item, "exchangeShortName", "exchange")),
        currency=text(item.get("currency")),
        sector=text(item.get("sector")),
        industry=text(item.get("industry")),
        country=text(item.get("country")),
        website=text(item.get("website")),
        description=text(item.get("description")),
        employees=integer(item.get("fullTimeEmployees")),  # a string ("161000") in recordings
        market_cap=integer(first_value(item, "marketCap", "mktCap")),
        as_of=received_at,
    )


KIND = DataKind.PROFILE


def build(ask: ProfileAsk) -> ProviderRequest:
    return build_profile_request(ask.symbol, base_url=ask.base_url)


def parse(reply: JsonReply, ask: ProfileAsk) -> CompanyProfile:
    return parse_profile_response(reply.payload, ask.provider, ask.symbol, received_at=ask.clock())
