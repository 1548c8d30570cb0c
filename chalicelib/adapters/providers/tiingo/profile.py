"""Tiingo company meta: ``/tiingo/daily/{ticker}``."""

from __future__ import annotations

from chalicelib.adapters.providers.calls import JsonReply, ProfileAsk, ProviderRequest
from chalicelib.adapters.providers.market_calendar import SESSION_CLOSE, at_new_york
from chalicelib.adapters.providers.tiingo import _common as tiingo
from chalicelib.adapters.providers.tiingo.historical import raise_if_unknown
from chalicelib.adapters.providers.values import json_object, text
from chalicelib.errors import ProviderParseError, ProviderUnsupported
from chalicelib.models.market import CompanyProfile, DataKind

KIND = DataKind.PROFILE


def build(ask: ProfileAsk) -> ProviderRequest:
    if tiingo.is_index_like(ask.symbol):
        raise ProviderUnsupported(ask.provider, "indices, currencies and futures are not offered")
    return tiingo.symbol_request(ask.base_url, "/tiingo/daily/{ticker}", ask.symbol, {})


def parse(reply: JsonReply, ask: ProfileAsk) -> CompanyProfile:
    """``as_of`` is the meta's ``endDate`` (its last price date, at the session close); a ticker without
    one is dated when it was fetched."""
    raise_if_unknown(reply, ask.provider, ask.symbol)
    body = json_object(reply.payload, ask.provider, "meta")
    if "ticker" not in body and isinstance(body.get("detail"), str):
        raise ProviderParseError(ask.provider, f"meta: Tiingo said {body['detail'][:160]!r} instead of data")
    end = body.get("endDate")
    return CompanyProfile(
        symbol=ask.symbol,
        name=text(body.get("name")),
        exchange=text(body.get("exchangeCode")),
        description=text(body.get("description")),
        as_of=at_new_york(tiingo.session_date(end, ask.provider), SESSION_CLOSE) if text(end) else ask.clock(),
    )
