"""FMP company profile: ``/stable/profile?symbol=`` (an array of one; ``[]`` for an unknown symbol).
FMP profiles carry no time: ``as_of`` is when the answer arrived."""

from __future__ import annotations

from chalicelib.adapters.providers.calls import JsonReply, ProfileAsk, ProviderRequest
from chalicelib.adapters.providers.fmp._common import FMP_BASE_URL
from chalicelib.adapters.providers.values import expect_list, first_value, integer, text
from chalicelib.errors import ProviderSymbolNotFound
from chalicelib.models.market import CompanyProfile, DataKind

KIND = DataKind.PROFILE
# Fields FMP spells as the standard model does (both generations).
_SAME_NAME_FIELDS = ("currency", "sector", "industry", "country", "website", "description")


def build_profile_request(symbol: str, *, base_url: str = FMP_BASE_URL) -> ProviderRequest:
    return ProviderRequest(url=f"{base_url}/stable/profile", params={"symbol": symbol})


def build(ask: ProfileAsk) -> ProviderRequest:
    return build_profile_request(ask.symbol, base_url=ask.base_url)


def parse(reply: JsonReply, ask: ProfileAsk) -> CompanyProfile:
    items = expect_list(reply.payload, ask.provider, "profile")
    if not items:
        raise ProviderSymbolNotFound(ask.provider, f"{ask.symbol} is unknown to FMP (empty answer)")
    item = items[0]
    return CompanyProfile(
        symbol=ask.symbol,
        name=text(first_value(item, "companyName", "name")),
        # v3: exchange is the long name, exchangeShortName the code; stable: exchange is the code.
        exchange=text(first_value(item, "exchangeShortName", "exchange")),
        **{field: text(item.get(field)) for field in _SAME_NAME_FIELDS},
        employees=integer(item.get("fullTimeEmployees")),  # a string ("161000") in recordings
        market_cap=integer(first_value(item, "marketCap", "mktCap")),
        as_of=ask.clock(),
    )
