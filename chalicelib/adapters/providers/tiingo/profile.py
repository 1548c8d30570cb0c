"""Tiingo company meta: ``/tiingo/daily/{ticker}``."""

from __future__ import annotations

from datetime import datetime

from chalicelib.adapters.providers.calls import JsonReply, ProfileAsk, ProviderRequest
from chalicelib.adapters.providers.market_calendar import SESSION_CLOSE, at_new_york
from chalicelib.adapters.providers.tiingo._common import (
    SYMBOL_CALL_STATUSES,
    TIINGO_BASE_URL,
    headers,
    is_index_like,
    session_date,
    ticker_path,
)
from chalicelib.adapters.providers.tiingo.historical import raise_if_unknown
from chalicelib.adapters.providers.values import json_object, text
from chalicelib.errors import ProviderParseError, ProviderUnsupported
from chalicelib.models.market import CompanyProfile, DataKind


def build_profile_request(symbol: str, *, base_url: str = TIINGO_BASE_URL) -> ProviderRequest:
    return ProviderRequest(
        url=f"{base_url}/tiingo/daily/{ticker_path(symbol)}",
        params={},
        headers=headers(),
        passthrough_statuses=SYMBOL_CALL_STATUSES,
    )


def parse_profile_response(payload: object, provider: str, symbol: str, *, now: datetime) -> CompanyProfile:
    """``as_of`` is the meta's ``endDate`` (its last price date, at the session close); a ticker without
    one is dated ``now`` (when it was fetched)."""
    body = json_object(payload, provider, "meta")
    if "ticker" not in body and isinstance(body.get("detail"), str):
        raise ProviderParseError(provider, f"meta: Tiingo said {body['detail'][:160]!r} instead of data")
    end = body.get("endDate")
    as_of = at_new_york(session_date(end, provider), SESSION_CLOSE) if text(end) else now
    return CompanyProfile(
        symbol=symbol,
        name=text(body.get("name")),
        exchange=text(body.get("exchangeCode")),
        description=text(body.get("description")),
        as_of=as_of,
    )


KIND = DataKind.PROFILE


def build(ask: ProfileAsk) -> ProviderRequest:
    if is_index_like(ask.symbol):
        raise ProviderUnsupported(ask.provider, "indices, currencies and futures are not offered")
    return build_profile_request(ask.symbol, base_url=ask.base_url)


def parse(reply: JsonReply, ask: ProfileAsk) -> CompanyProfile:
    raise_if_unknown(reply, ask.provider, ask.symbol)
    return parse_profile_response(reply.payload, ask.provider, ask.symbol, now=ask.clock())
