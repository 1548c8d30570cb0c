"""Yahoo company profile: v10 ``/v10/finance/quoteSummary/{symbol}?modules=assetProfile,price``.
A quoteSummary 404 is ProviderSymbolNotFound (in a 200 body or an HTTP error body)."""

from __future__ import annotations

from datetime import datetime

from chalicelib.adapters.providers.calls import JsonReply, ProfileAsk, ProviderRequest
from chalicelib.adapters.providers.values import epoch, first_text, json_number
from chalicelib.adapters.providers.yahoo._common import DEFAULT_BASE_URL, envelope, path_symbol
from chalicelib.errors import ProviderNoData, ProviderParseError, ProviderSymbolNotFound, ProviderUnavailable
from chalicelib.models.market import CompanyProfile, DataKind

PROFILE_MODULES = "assetProfile,price"


def build_profile_request(symbol: str, *, base_url: str = DEFAULT_BASE_URL) -> ProviderRequest:
    return ProviderRequest(
        url=f"{base_url}/v10/finance/quoteSummary/{path_symbol(symbol)}",
        params={"modules": PROFILE_MODULES, "formatted": "false"},
    )


def parse_profile_response(payload: object, provider: str, *, symbol: str, now: datetime) -> CompanyProfile:
    """quoteSummary (modules assetProfile or summaryProfile, plus price) onto CompanyProfile. ``as_of``
    is the price module's ``regularMarketTime`` when present, else ``now`` (the retrieval)."""
    summary, error = envelope(payload, provider, "quoteSummary")
    if error is not None:
        code, description = error
        if code == "Not Found":
            raise ProviderSymbolNotFound(provider, f"Yahoo: {description or code}")
        raise ProviderUnavailable(provider, f"Yahoo quoteSummary error: {description or code}")
    results = summary.get("result")
    if not isinstance(results, list):
        raise ProviderParseError(provider, "quoteSummary.result is not a list")
    if not results:
        raise ProviderSymbolNotFound(provider, f"Yahoo has no profile for {symbol}")
    result = results[0]
    if not isinstance(result, dict):
        raise ProviderParseError(provider, "quoteSummary.result[0] is not an object")
    profile = result.get("assetProfile") or result.get("summaryProfile")
    price = result.get("price")
    profile = profile if isinstance(profile, dict) else {}
    price = price if isinstance(price, dict) else {}
    if not profile and not price:
        raise ProviderNoData(provider, f"Yahoo's quoteSummary for {symbol} holds neither profile nor price")
    employees = json_number(profile.get("fullTimeEmployees"))
    market_cap = json_number(price.get("marketCap"))
    return CompanyProfile(
        symbol=symbol,
        name=first_text(price, "longName", "shortName"),
        exchange=first_text(price, "exchangeName", "exchange"),
        currency=first_text(price, "currency"),
        sector=first_text(profile, "sector", "sectorDisp"),
        industry=first_text(profile, "industry", "industryDisp"),
        country=first_text(profile, "country"),
        website=first_text(profile, "website"),
        description=first_text(profile, "longBusinessSummary"),
        employees=int(employees) if employees is not None and employees >= 0 else None,
        market_cap=int(market_cap) if market_cap is not None else None,
        as_of=epoch(price.get("regularMarketTime")) or now,
    )


KIND = DataKind.PROFILE


def build(ask: ProfileAsk) -> ProviderRequest:
    return build_profile_request(ask.symbol, base_url=ask.base_url)


def parse(reply: JsonReply, ask: ProfileAsk) -> CompanyProfile:
    return parse_profile_response(reply.payload, ask.provider, symbol=ask.symbol, now=ask.clock())
