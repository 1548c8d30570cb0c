"""Yahoo Finance through yfinance.

The three steps of every provider: build the request (pure), fetch (the only network I/O), map the
payload onto the standard models (pure; tested against recorded genuine responses).

Quotes use Yahoo's v7 quote endpoint, the same call yfinance's ``Ticker.info`` makes for its market
fields, issued through yfinance's ``YfData`` so that yfinance keeps doing what it is good at (the
cookie/crumb handshake, consent pages, its session handling) while the endpoint takes many symbols in
one request, which the batch endpoints and the refresh jobs need. yfinance (and pandas under it) is
imported on first use only: a request that never reaches Yahoo does not pay for it at cold start.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import requests
from pydantic import ValidationError

from chalicelib.adapters.providers.base import BaseProvider
from chalicelib.errors import (
    ProviderError,
    ProviderParseError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from chalicelib.models.market import DataKind, Quote

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
# Yahoo answers long symbol lists, but URLs past ~8 KB get refused by intermediaries.
MAX_SYMBOLS_PER_QUOTE_REQUEST = 200


@dataclass(frozen=True)
class QuoteRequest:
    url: str
    params: dict[str, str]


@functools.cache
def load_yfinance(cache_dir: str) -> ModuleType:
    """Import yfinance once per container and point its sqlite caches at a writable path (/tmp on Lambda)."""
    import yfinance

    module: ModuleType = yfinance

    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    yfinance.set_tz_cache_location(cache_dir)  # also moves the cookie and ISIN caches
    return module


def build_quote_request(symbols: Sequence[str]) -> QuoteRequest:
    if not symbols:
        raise ValueError("at least one symbol is required")
    if len(symbols) > MAX_SYMBOLS_PER_QUOTE_REQUEST:
        raise ValueError(f"at most {MAX_SYMBOLS_PER_QUOTE_REQUEST} symbols per request")
    return QuoteRequest(
        url=QUOTE_URL,
        params={"symbols": ",".join(symbols), "formatted": "false", "lang": "en-US", "region": "US"},
    )


def _number(item: dict[str, Any], key: str) -> float | None:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _integer(item: dict[str, Any], key: str) -> int | None:
    value = _number(item, key)
    return int(value) if value is not None else None


def parse_quote_response(payload: object, provider: str) -> dict[str, Quote]:
    """Map a v7 quote payload onto Quote models, keyed by symbol. Items without a price are skipped
    (Yahoo lists some instruments it has no market data for)."""
    if not isinstance(payload, dict):
        raise ProviderParseError(provider, f"expected a JSON object, got {type(payload).__name__}")
    # Errors come either inside quoteResponse or, for auth/crumb failures, under "finance".
    envelope = payload.get("quoteResponse") or payload.get("finance")
    if not isinstance(envelope, dict):
        raise ProviderParseError(provider, "no quoteResponse in payload")
    error = envelope.get("error")
    if error:
        description = error.get("description") if isinstance(error, dict) else str(error)
        raise ProviderUnavailable(provider, f"Yahoo error: {str(description)[:200]}")
    result = envelope.get("result")
    if not isinstance(result, list):
        raise ProviderParseError(provider, "quoteResponse.result is not a list")
    quotes: dict[str, Quote] = {}
    for item in result:
        if not isinstance(item, dict) or not isinstance(item.get("symbol"), str):
            raise ProviderParseError(provider, "quote item without a symbol")
        price = _number(item, "regularMarketPrice")
        if price is None:
            continue
        market_time = _integer(item, "regularMarketTime")
        try:
            quote = Quote(
                symbol=item["symbol"],
                price=price,
                change=_number(item, "regularMarketChange"),
                change_percent=_number(item, "regularMarketChangePercent"),
                volume=_integer(item, "regularMarketVolume"),
                previous_close=_number(item, "regularMarketPreviousClose"),
                open=_number(item, "regularMarketOpen"),
                day_high=_number(item, "regularMarketDayHigh"),
                day_low=_number(item, "regularMarketDayLow"),
                fifty_two_week_high=_number(item, "fiftyTwoWeekHigh"),
                fifty_two_week_low=_number(item, "fiftyTwoWeekLow"),
                market_cap=_integer(item, "marketCap"),
                name=item.get("longName") or item.get("shortName") or item.get("displayName"),
                currency=item.get("currency"),
                exchange=item.get("fullExchangeName") or item.get("exchange"),
                market_state=item.get("marketState"),
                as_of=datetime.fromtimestamp(market_time, tz=UTC) if market_time else datetime.now(UTC),
            )
        except ValidationError as exc:
            raise ProviderParseError(
                provider, f"unexpected quote for {item['symbol']!r}: {exc.errors()[0]['msg']}"
            ) from exc
        quotes[quote.symbol] = quote
    return quotes


class YahooProvider(BaseProvider):
    """Yahoo Finance via yfinance, over an injected requests session."""

    vendor_name = "yahoo"
    supported = frozenset({DataKind.QUOTE, DataKind.INDICES, DataKind.SECTORS})
    quote_batch_size = MAX_SYMBOLS_PER_QUOTE_REQUEST

    def __init__(self, session: requests.Session, *, cache_dir: str, source_label: str = "yahoo") -> None:
        super().__init__(session, source_label=source_label)
        self._cache_dir = cache_dir

    def get_quotes(self, symbols: Sequence[str], *, timeout_seconds: float) -> dict[str, Quote]:
        request = build_quote_request(symbols)
        payload = self._fetch_json(request, timeout_seconds)
        return parse_quote_response(payload, self._label)

    def _fetch_json(self, request: QuoteRequest, timeout_seconds: float) -> object:
        load_yfinance(self._cache_dir)
        from yfinance.data import YfData  # imported here, not at module level: cold start
        from yfinance.exceptions import YFException, YFRateLimitError

        # YfData is yfinance's per-process singleton; passing the session (re)binds it to ours.
        data = YfData(session=self._session)
        try:
            return data.get_raw_json(request.url, params=request.params, timeout=timeout_seconds)
        except requests.Timeout as exc:
            raise ProviderTimeout(self._label, f"no answer within {timeout_seconds:.1f}s") from exc
        except requests.HTTPError as exc:
            raise self._http_error(exc) from exc
        except requests.JSONDecodeError as exc:
            raise ProviderParseError(self._label, "response is not JSON") from exc
        except requests.RequestException as exc:
            raise ProviderUnavailable(self._label, f"network error: {type(exc).__name__}") from exc
        except YFRateLimitError as exc:
            raise ProviderRateLimited(self._label, "rate limited by Yahoo") from exc
        except YFException as exc:
            raise ProviderUnavailable(self._label, f"yfinance: {str(exc)[:200]}") from exc

    def _http_error(self, exc: requests.HTTPError) -> ProviderError:
        response = exc.response
        status = response.status_code if response is not None else 0
        if status == 429:
            retry_after = response.headers.get("Retry-After", "") if response is not None else ""
            return ProviderRateLimited(
                self._label, "HTTP 429", retry_after_seconds=int(retry_after) if retry_after.isdigit() else None
            )
        detail = yahoo_error_description(response.text if response is not None else "")
        return ProviderUnavailable(self._label, f"HTTP {status}" + (f": {detail}" if detail else ""))


def yahoo_error_description(body: str) -> str | None:
    """Yahoo's error object ({"<envelope>": {"error": {"code", "description"}}}) from an error body, if any."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    for envelope in payload.values():
        error = envelope.get("error") if isinstance(envelope, dict) else None
        if isinstance(error, dict) and error.get("description"):
            return str(error["description"])[:200]
    return None
