"""Yahoo Finance through yfinance. One module per dataset; this one declares the vendor, its transport
and its reading of Yahoo's error answers.

Every call goes through yfinance's ``YfData`` so that yfinance keeps doing what it is good at (the
cookie/crumb handshake, consent pages, its session handling) while we choose the endpoint; the answer
then goes through the base's status mapping like every vendor's. yfinance repeats a 4xx/5xx request
once with its other cookie strategy and raises its own error for a repeated 429.

Errors: the body's Yahoo error object decides what an HTTP error means (the dataset modules say how
per endpoint). A 401 is Yahoo's "Invalid Crumb" (session plumbing, a retry gets a new crumb) →
ProviderUnavailable; 403 → ProviderAuthError. Yahoo takes no API key, so no secret can leak.

yfinance (and pandas under it, from the layer) is imported on the first call to Yahoo only
(chalicelib/lazy.py): a request that never reaches Yahoo does not pay for it at cold start.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests

from chalicelib import lazy
from chalicelib.adapters.providers.base import BaseProvider
from chalicelib.adapters.providers.calls import ProviderRequest, Reply, routes_of
from chalicelib.adapters.providers.yahoo import historical, movers, news, profile, quote, search
from chalicelib.adapters.providers.yahoo._common import DEFAULT_BASE_URL, error_object
from chalicelib.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderSymbolNotFound,
    ProviderUnavailable,
    ProviderUnsupported,
)
from chalicelib.models.market import DataKind

if TYPE_CHECKING:
    import yfinance
    from yfinance import data as yfinance_data
    from yfinance import exceptions as yfinance_errors
else:
    yfinance = lazy.module("yfinance")
    yfinance_data = lazy.module("yfinance.data")
    yfinance_errors = lazy.module("yfinance.exceptions")


@functools.cache
def load_yfinance(cache_dir: str) -> ModuleType:
    """Import yfinance once per container and point its sqlite caches at a writable path (/tmp on Lambda)."""
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    yfinance.set_tz_cache_location(cache_dir)  # also moves the cookie and ISIN caches
    module: ModuleType = yfinance
    return module


class YahooProvider(BaseProvider):
    """Yahoo Finance via yfinance, over an injected requests session."""

    vendor_name = "yahoo"
    routes = routes_of(quote, historical, profile, search, news, movers)
    quote_kinds = frozenset({DataKind.INDICES, DataKind.SECTORS})
    quote_batch_size = quote.MAX_SYMBOLS_PER_QUOTE_REQUEST

    def __init__(
        self,
        session: requests.Session,
        *,
        cache_dir: str,
        source_label: str = "yahoo",
        base_url: str = DEFAULT_BASE_URL,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(session, source_label=source_label, base_url=base_url, clock=clock)
        self._cache_dir = cache_dir

    def _send(self, request: ProviderRequest, timeout_seconds: float) -> requests.Response:
        load_yfinance(self._cache_dir)
        # YfData is yfinance's per-process singleton; passing the session (re)binds it to ours.
        data = yfinance_data.YfData(session=self._session)
        try:
            response: requests.Response = data.get(request.url, params=dict(request.params), timeout=timeout_seconds)
        except yfinance_errors.YFRateLimitError as exc:
            raise ProviderRateLimited(self._label, "rate limited by Yahoo") from exc
        except yfinance_errors.YFException as exc:
            raise ProviderUnavailable(self._label, f"yfinance: {str(exc)[:200]}") from exc
        return response

    def _classify(self, reply: Reply) -> ProviderError | None:
        """Yahoo's error object in an HTTP error body, read per endpoint; a 401 is a stale crumb."""
        body = reply.payload if isinstance(reply.payload, dict) else {}
        path = urlsplit(reply.request.url if reply.request else "").path
        if "/v8/finance/chart/" in path and reply.status in (400, 404, 422):
            chart = error_object(body, "chart")
            if chart is not None:
                return historical.chart_error(reply.status, *chart, self._label)
        if "/v10/finance/quoteSummary/" in path and reply.status == 404:
            summary = error_object(body, "quoteSummary")
            if summary is not None:
                return ProviderSymbolNotFound(self._label, f"Yahoo: {summary[1] or summary[0]}")
        if path.endswith("/v1/finance/search") and reply.status == 400:
            refusal = error_object(body, "finance")
            if refusal is not None:
                return ProviderUnsupported(self._label, f"Yahoo refused the request: {refusal[1] or refusal[0]}")
        if reply.status == 401:
            return ProviderUnavailable(self._label, f"HTTP 401: {reply.snippet}")
        return None
