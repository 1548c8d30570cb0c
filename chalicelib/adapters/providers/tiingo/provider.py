"""Tiingo (https://api.tiingo.com) over plain REST, mapped against the genuine recordings in
tests/fixtures/providers/tiingo/. One module per dataset; this one declares the vendor.

Auth: the key travels only in the ``Authorization: Token <key>`` header, attached at fetch time (the
built requests never hold it, and the header value's repr is redacted). It is never in a URL, a log
line or an error message; as a last guard the base scrubs any error text that would contain it.
"""

from __future__ import annotations

from dataclasses import replace

from chalicelib.adapters.providers.base import KeyedProvider
from chalicelib.adapters.providers.calls import ProviderRequest, routes_of
from chalicelib.adapters.providers.tiingo import historical, news, profile, quote, search
from chalicelib.adapters.providers.tiingo._common import TIINGO_BASE_URL


class _RedactedToken(str):
    """The Authorization header value: a str to requests, but its repr (dataclass/dict reprs, debug
    output) never shows the key."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'Token <redacted>'"


class TiingoProvider(KeyedProvider):
    """Tiingo REST: end-of-day quotes, daily/weekly/monthly and IEX intraday history, meta, news, search."""

    vendor_name = "tiingo"
    default_base_url = TIINGO_BASE_URL
    routes = routes_of(quote, historical, profile, news, search)
    quote_batch_size = 1  # no multi-ticker daily endpoint

    def _authorize(self, request: ProviderRequest) -> ProviderRequest:
        token = _RedactedToken(f"Token {self._api_key}")
        return replace(request, headers={**(request.headers or {}), "Authorization": token})
