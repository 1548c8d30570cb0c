"""Financial Modeling Prep (https://financialmodelingprep.com) over plain REST, ``/stable`` generation,
mapped against the genuine recordings in tests/fixtures/providers/fmp/. One module per dataset; this one
declares the vendor, its key and its reading of error answers (``_common`` lists them).

FMP retired ``/api/v3`` for keys issued after August 2025, so only ``/stable`` is called, but the parsers
also read the v3 field names and shapes, which the older recordings show and which real answers still mix.

Auth: the key travels as the ``apikey`` query parameter, as FMP documents it for every endpoint. It is
attached at fetch time (built requests never hold it), never logged, and never in an error (the base
rebuilds every error leaving this adapter without its cause chain and with the key scrubbed).

A plan refusal is remembered for ``PLAN_REFUSAL_MEMORY``: until then the endpoint answers
ProviderUnsupported without spending quota.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from chalicelib.adapters.providers.base import KeyedProvider
from chalicelib.adapters.providers.calls import JsonReply, ProviderRequest, Reply, routes_of
from chalicelib.adapters.providers.fmp import historical, movers, profile, quote, search
from chalicelib.adapters.providers.fmp._common import FMP_BASE_URL, classify_error, error_message, is_plan_refusal
from chalicelib.errors import ProviderError, ProviderUnsupported
from chalicelib.models.market import DataKind

# How long a "your plan lacks this endpoint" answer is trusted before the endpoint is asked again.
PLAN_REFUSAL_MEMORY = timedelta(hours=1)


class FmpProvider(KeyedProvider):
    """FMP ``/stable`` REST: batch quotes (indices, sector ETFs), daily/weekly/monthly history, profiles,
    symbol search and market movers."""

    vendor_name = "fmp"
    default_base_url = FMP_BASE_URL
    routes = routes_of(quote, historical, profile, search, movers)
    quote_kinds = frozenset({DataKind.INDICES, DataKind.SECTORS})
    quote_batch_size = quote.QUOTE_BATCH_SIZE

    @functools.cached_property
    def _plan_refusals(self) -> dict[str, datetime]:
        """Endpoint path -> until when FMP's "not in your plan" answer is trusted (per container)."""
        return {}

    def _classify(self, reply: Reply) -> ProviderError | None:
        """FMP's error objects on HTTP 200, and a 401/402/403 whose own message is FMP's plan wording:
        the key is fine, only this endpoint is refused (any other 401/402/403 stays ProviderAuthError)."""
        if 200 <= reply.status < 300:
            message = error_message(reply.payload)
            return classify_error(message, self._label) if message is not None else None
        if reply.status in (401, 402, 403) and is_plan_refusal(reply.snippet):
            return ProviderUnsupported(self._label, f"not in this FMP plan (HTTP {reply.status}: {reply.snippet})")
        return None

    def _fetch(self, request: ProviderRequest, timeout_seconds: float) -> JsonReply:
        path = request.url.removeprefix(self._base_url)
        refused_until = self._plan_refusals.get(path)
        if refused_until is not None and self._clock() < refused_until:
            raise ProviderUnsupported(self._label, f"{path} is not in this FMP plan (FMP said so recently)")
        try:
            return super()._fetch(request, timeout_seconds)
        except ProviderUnsupported:
            self._plan_refusals[path] = self._clock() + PLAN_REFUSAL_MEMORY
            raise
