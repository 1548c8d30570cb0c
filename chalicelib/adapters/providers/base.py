"""The one provider adapter: public methods, the fetch, HTTP-status classification, key handling and
the mapping of validation failures. A vendor is a table and three hooks.

A vendor package supplies ``routes`` (``{DataKind: (build, parse)}``: ``build(ask)`` is pure and gives a
ProviderRequest, or ``Answered(value)`` when nothing need be asked; ``parse(reply, ask)`` is pure and
maps the payload onto the standard models or raises a typed ProviderError), ``_authorize(request)``
(adds its key, if any, just before the fetch) and ``_classify(reply)`` (its own error answers, read
before the generic status mapping). Every public method makes at most one upstream request.

Secrets: FMP and Alpha Vantage take their key in the query string. requests puts the full URL into
its exception messages, so nothing here ever formats a requests exception or a URL into an error
message or a log line: errors name the exception type and the HTTP status only. Errors leaving a
vendor with a key are rebuilt without their cause chain and with the key cut out of their text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import requests
from pydantic import ValidationError

from chalicelib.adapters.http import ResponseCut
from chalicelib.adapters.providers.calls import (
    Answered,
    Ask,
    HistoryAsk,
    JsonReply,
    MoversAsk,
    NewsAsk,
    ProfileAsk,
    ProviderRequest,
    QuoteAsk,
    Reply,
    Route,
    SearchAsk,
)
from chalicelib.errors import (
    ProviderAuthError,
    ProviderError,
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

__all__ = ["BaseProvider", "JsonReply", "KeyedProvider", "ProviderRequest", "Reply", "fetch_json"]

# An error body is quoted in a message only this far (it is vendor text, possibly long HTML).
_SNIPPET_CHARS = 160
# What the "unsupported" answer names for each kind a vendor has no route for.
_KIND_NAMES: Mapping[DataKind, str] = {
    DataKind.QUOTE: "quotes",
    DataKind.HISTORICAL: "historical prices",
    DataKind.PROFILE: "company profiles",
    DataKind.SEARCH: "symbol search",
    DataKind.NEWS: "news",
    DataKind.MOVERS: "market movers",
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class BaseProvider:
    """The public behaviour of every vendor adapter; a vendor declares its routes and hooks."""

    vendor_name: ClassVar[str] = "base"
    routes: ClassVar[Mapping[DataKind, Route]] = {}
    # Kinds served through the quote route (index symbols, the sector ETFs), beyond the routes' own.
    quote_kinds: ClassVar[frozenset[DataKind]] = frozenset()
    quote_batch_size: ClassVar[int] = 1
    # What the vendor serves (read off the class by the providers endpoint): its routes and quote kinds.
    supported: ClassVar[frozenset[DataKind]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.supported = frozenset(cls.routes) | cls.quote_kinds

    def __init__(
        self,
        session: requests.Session,
        *,
        source_label: str | None = None,
        base_url: str = "",
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._session = session
        self._label = source_label or self.vendor_name
        self._base_url = base_url.rstrip("/")
        self._clock = clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r}, source_label={self._label!r})"

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

    # --- the public methods (the MarketDataProvider port) ----------------------------------------

    def get_quotes(self, symbols: Sequence[str], *, timeout_seconds: float) -> dict[str, Quote]:
        ask = QuoteAsk(symbols=list(symbols), **self._ask_context())
        return cast("dict[str, Quote]", self._serve(DataKind.QUOTE, ask, timeout_seconds))

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, timeout_seconds: float
    ) -> HistoricalData:
        ask = HistoryAsk(symbol=symbol, period=period, interval=interval, **self._ask_context())
        return cast("HistoricalData", self._serve(DataKind.HISTORICAL, ask, timeout_seconds))

    def get_profile(self, symbol: str, *, timeout_seconds: float) -> CompanyProfile:
        ask = ProfileAsk(symbol=symbol, **self._ask_context())
        return cast("CompanyProfile", self._serve(DataKind.PROFILE, ask, timeout_seconds))

    def search(self, query: str, limit: int, *, timeout_seconds: float) -> list[SearchResult]:
        ask = SearchAsk(query=query, limit=limit, **self._ask_context())
        return cast("list[SearchResult]", self._serve(DataKind.SEARCH, ask, timeout_seconds))

    def get_news(self, symbol: str, limit: int, *, timeout_seconds: float) -> list[NewsArticle]:
        ask = NewsAsk(symbol=symbol, limit=limit, **self._ask_context())
        return cast("list[NewsArticle]", self._serve(DataKind.NEWS, ask, timeout_seconds))

    def get_movers(self, mover_type: MoverType, limit: int, *, timeout_seconds: float) -> list[Quote]:
        ask = MoversAsk(mover_type=mover_type, limit=limit, **self._ask_context())
        return cast("list[Quote]", self._serve(DataKind.MOVERS, ask, timeout_seconds))

    # --- one call: build, authorize, fetch, classify, parse -----------------------------------------

    def _ask_context(self) -> dict[str, Any]:
        return {"provider": self._label, "base_url": self._base_url, "clock": self._clock}

    def _serve(self, kind: DataKind, ask: Ask, timeout_seconds: float) -> object:
        try:
            return self._answer(kind, ask, timeout_seconds)
        except ProviderError as exc:
            # Pure steps name the vendor; what leaves carries this adapter's label (``replay`` for one).
            failure = exc.rebuilt(provider=self._label) if exc.provider != self._label else exc
            secrets = [secret for secret in self._secrets() if secret]
            if not secrets and failure is exc:
                raise
            for secret in secrets:
                failure = failure.rebuilt(detail=failure.detail.replace(secret, "<redacted>"))
        # Raised outside the except block, as a fresh error: neither __cause__ nor __context__ keeps a
        # requests exception, whose text holds the full URL and so any key in it.
        raise failure

    def _answer(self, kind: DataKind, ask: Ask, timeout_seconds: float) -> object:
        route = self.routes.get(kind)
        if route is None:
            raise ProviderUnsupported(self._label, f"{_KIND_NAMES[kind]} is not offered by this provider")
        build, parse = route
        planned = build(ask)
        if isinstance(planned, Answered):
            return planned.value
        reply = self._fetch(self._authorize(planned), timeout_seconds)
        try:
            return parse(reply, ask)
        except ValueError as exc:  # a model refusing a value (pydantic's ValidationError) or an unreadable one
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else exc
            raise ProviderParseError(self._label, f"unexpected {kind.value} answer: {str(reason)[:120]}") from exc

    # --- the vendor's hooks --------------------------------------------------------------------------

    def _authorize(self, request: ProviderRequest) -> ProviderRequest:
        """The request with the vendor's credentials added (none by default)."""
        return request

    def _secrets(self) -> Sequence[str]:
        """What must never appear in an error leaving this adapter (the vendor's key)."""
        return ()

    def _classify(self, reply: Reply) -> ProviderError | None:
        """The vendor's reading of an answer that is an error in its own terms; None: the generic mapping."""
        return None

    def _send(self, request: ProviderRequest, timeout_seconds: float) -> requests.Response:
        """The only network I/O: one GET, always with a timeout."""
        return self._session.get(
            request.url, params=dict(request.params), headers=dict(request.headers or {}), timeout=timeout_seconds
        )

    # --- the fetch ---------------------------------------------------------------------------------------

    def _fetch(self, request: ProviderRequest, timeout_seconds: float) -> JsonReply:
        """GET ``request`` and decode its JSON body.

        2xx and the request's passthrough statuses come back as a JsonReply, after the vendor's
        ``_classify`` had its say; everything else raises: timeout → ProviderTimeout, network →
        ProviderUnavailable (retryable), 429 → ProviderRateLimited, 401/402/403 → ProviderAuthError, 5xx
        → ProviderUnavailable, HTML/truncated/non-JSON bodies → ProviderParseError."""
        provider = self._label
        try:
            response = self._send(request, timeout_seconds)
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
        content_type = response.headers.get("Content-Type", "")
        try:
            payload: object = json.loads(response.content)
            decoded = True
        except ValueError:
            payload, decoded = None, False
        # The snippet is for error answers only: decoding a large 2xx body as text would cost for nothing.
        snippet = "" if 200 <= status < 300 else _snippet(response.text, payload)
        reply = Reply(status, payload, retry_after, request=request, snippet=snippet)
        classified = self._classify(reply)
        if classified is not None:
            raise classified
        passthrough = request.passthrough_statuses
        if status in (401, 402, 403) and status not in passthrough:
            raise ProviderAuthError(provider, f"HTTP {status}: {reply.snippet}")
        if status >= 500:
            raise ProviderUnavailable(provider, f"HTTP {status}")
        if not (200 <= status < 300) and status not in passthrough:
            raise ProviderUnavailable(provider, f"HTTP {status}: {reply.snippet}")
        if "html" in content_type.lower():
            raise ProviderParseError(provider, f"HTTP {status} answered with an HTML page, not JSON")
        if not decoded:
            raise ProviderParseError(
                provider,
                f"HTTP {status} body is not valid JSON (content type {content_type or 'missing'}): "
                "cut short, or not JSON at all",
            )
        return JsonReply(status=status, payload=payload, retry_after_seconds=retry_after)


class KeyedProvider(BaseProvider):
    """A vendor that takes an API key, by default as the ``apikey`` query parameter (FMP, Alpha Vantage)."""

    default_base_url: ClassVar[str] = ""

    def __init__(
        self,
        session: requests.Session,
        *,
        api_key: str,
        base_url: str | None = None,
        source_label: str | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        super().__init__(session, source_label=source_label, base_url=base_url or self.default_base_url, clock=clock)
        if not api_key:
            raise ValueError(f"{self.vendor_name} needs an API key")
        self._api_key = api_key

    def _authorize(self, request: ProviderRequest) -> ProviderRequest:
        return replace(request, params={**request.params, "apikey": self._api_key})

    def _secrets(self) -> Sequence[str]:
        return (self._api_key,)


def fetch_json(
    session: requests.Session,
    request: ProviderRequest,
    *,
    provider: str,
    timeout_seconds: float,
    passthrough_statuses: frozenset[int] = frozenset(),
) -> JsonReply:
    """The generic fetch of one request, outside any vendor."""
    request = replace(request, passthrough_statuses=request.passthrough_statuses | passthrough_statuses)
    return BaseProvider(session, source_label=provider)._fetch(request, timeout_seconds)


def _retry_after(response: requests.Response) -> int | None:
    value = response.headers.get("Retry-After", "")
    return int(value) if value.isdigit() else None


def _snippet(text: str, payload: object) -> str:
    """The vendor's own error text (JSON message fields preferred, or the description of an
    ``{"<envelope>": {"error": {...}}}`` object), shortened."""
    if isinstance(payload, dict):
        for key in ("Error Message", "detail", "message", "error", "Information", "Note"):
            if isinstance(payload.get(key), str):
                text = payload[key]
                break
        else:
            for envelope in payload.values():
                error = envelope.get("error") if isinstance(envelope, dict) else None
                if isinstance(error, dict) and isinstance(error.get("description"), str):
                    text = error["description"]
                    break
    text = " ".join(text.split())
    return text[:_SNIPPET_CHARS] or "(empty body)"
