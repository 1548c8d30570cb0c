"""What every provider adapter shares: unsupported-by-default methods and one JSON fetch that turns
transport failures and HTTP statuses into typed ProviderErrors.

Secrets: FMP and Alpha Vantage take their key in the query string. requests puts the full URL into
its exception messages, so nothing here ever formats a requests exception or a URL into an error
message or a log line: errors name the exception type and the HTTP status only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import requests

from chalicelib.adapters.http import ResponseCut
from chalicelib.errors import (
    ProviderAuthError,
    ProviderParseError,
    ProviderRateLimited,
    ProviderResponseCut,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnsupported,
)
from chalicelib.models.market import (
    CompanyProfile,
    DataKind,
    HistoricalData,
    Interval,
    MoverType,
    NewsArticle,
    Period,
    Quote,
    SearchResult,
)

# An error body is quoted in a message only this far (it is vendor text, possibly long HTML).
_SNIPPET_CHARS = 160


@dataclass(frozen=True)
class ProviderRequest:
    """What the build step produces: a pure description of one upstream call (no secrets logged from it)."""

    url: str
    params: Mapping[str, str] = field(repr=False)  # may hold a key: never printed
    headers: Mapping[str, str] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class JsonReply:
    status: int
    payload: object
    retry_after_seconds: int | None = None


class BaseProvider:
    """Defaults for a vendor adapter: every data method is unsupported until the vendor implements it."""

    vendor_name: str = "base"
    supported: frozenset[DataKind] = frozenset()
    quote_batch_size: int = 1

    def __init__(self, session: requests.Session, *, source_label: str | None = None) -> None:
        self._session = session
        self._label = source_label or self.vendor_name

    @property
    def name(self) -> str:
        return self._label

    @property
    def vendor(self) -> str:
        return self.vendor_name

    @property
    def capabilities(self) -> frozenset[DataKind]:
        return self.supported

    @property
    def max_symbols_per_quote_call(self) -> int:
        return self.quote_batch_size

    def _unsupported(self, what: str) -> ProviderUnsupported:
        return ProviderUnsupported(self._label, f"{what} is not offered by this provider")

    def get_quotes(self, symbols: Sequence[str], *, timeout_seconds: float) -> dict[str, Quote]:
        raise self._unsupported("quotes")

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, timeout_seconds: float
    ) -> HistoricalData:
        raise self._unsupported("historical prices")

    def get_profile(self, symbol: str, *, timeout_seconds: float) -> CompanyProfile:
        raise self._unsupported("company profiles")

    def search(self, query: str, limit: int, *, timeout_seconds: float) -> list[SearchResult]:
        raise self._unsupported("symbol search")

    def get_news(self, symbol: str, limit: int, *, timeout_seconds: float) -> list[NewsArticle]:
        raise self._unsupported("news")

    def get_movers(self, mover_type: MoverType, limit: int, *, timeout_seconds: float) -> list[Quote]:
        raise self._unsupported("market movers")

    def _get_json(
        self, request: ProviderRequest, *, timeout_seconds: float, passthrough_statuses: frozenset[int] = frozenset()
    ) -> JsonReply:
        return fetch_json(
            self._session,
            request,
            provider=self._label,
            timeout_seconds=timeout_seconds,
            passthrough_statuses=passthrough_statuses,
        )


def fetch_json(
    session: requests.Session,
    request: ProviderRequest,
    *,
    provider: str,
    timeout_seconds: float,
    passthrough_statuses: frozenset[int] = frozenset(),
) -> JsonReply:
    """GET ``request`` and decode its JSON body.

    2xx and the statuses in ``passthrough_statuses`` (e.g. 404, which the adapter reads as "unknown
    symbol") come back as a JsonReply; everything else raises: timeout → ProviderTimeout, network →
    ProviderUnavailable (retryable), 429 → ProviderRateLimited, 401/402/403 → ProviderAuthError, 5xx →
    ProviderUnavailable, HTML/truncated/non-JSON bodies → ProviderParseError."""
    try:
        response = session.get(
            request.url, params=dict(request.params), headers=dict(request.headers or {}), timeout=timeout_seconds
        )
    except ResponseCut as exc:
        raise ProviderResponseCut(provider, f"response cut ({type(exc).__name__})") from None
    except requests.Timeout as exc:
        # `from None`: requests' exception text holds the full URL, and with it FMP's/AV's key.
        raise ProviderTimeout(provider, f"no answer within {timeout_seconds:.1f}s ({type(exc).__name__})") from None
    except requests.RequestException as exc:
        raise ProviderUnavailable(provider, f"network error ({type(exc).__name__})") from None
    status = response.status_code
    retry_after = _retry_after(response)
    if status == 429:
        raise ProviderRateLimited(provider, "HTTP 429 (rate limited)", retry_after_seconds=retry_after)
    if status in (401, 402, 403) and status not in passthrough_statuses:
        raise ProviderAuthError(provider, f"HTTP {status}: {_snippet(response)}")
    if status >= 500:
        raise ProviderUnavailable(provider, f"HTTP {status}")
    if not (200 <= status < 300) and status not in passthrough_statuses:
        raise ProviderUnavailable(provider, f"HTTP {status}: {_snippet(response)}")
    content_type = response.headers.get("Content-Type", "")
    if "html" in content_type.lower():
        raise ProviderParseError(provider, f"HTTP {status} answered with an HTML page, not JSON")
    try:
        payload = json.loads(response.content)
    except ValueError as exc:
        raise ProviderParseError(
            provider, f"HTTP {status} body is not valid JSON (content type {content_type or 'missing'})"
        ) from exc
    return JsonReply(status=status, payload=payload, retry_after_seconds=retry_after)


def _retry_after(response: requests.Response) -> int | None:
    value = response.headers.get("Retry-After", "")
    return int(value) if value.isdigit() else None


def _snippet(response: requests.Response) -> str:
    """The vendor's own error text (JSON message fields preferred), shortened; never the URL."""
    text = response.text
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        for key in ("Error Message", "detail", "message", "error", "Information", "Note"):
            if isinstance(payload.get(key), str):
                text = payload[key]
                break
    text = " ".join(text.split())
    return text[:_SNIPPET_CHARS] or "(empty body)"
