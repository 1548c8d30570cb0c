"""Helpers to answer yfinance's HTTP calls with recorded Yahoo responses (tests only)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.yahoo import DEFAULT_BASE_URL, YahooProvider
from infra.local.replay.transport import YAHOO_DIR, CannedResponse, CannedTransport, recorded

QUOTE_PREFIX = "https://query1.finance.yahoo.com/v7/finance/quote"
CHART_PREFIX = "https://query2.finance.yahoo.com/v8/finance/chart/"
QUOTE_SUMMARY_PREFIX = "https://query2.finance.yahoo.com/v10/finance/quoteSummary/"
SEARCH_PREFIX = "https://query2.finance.yahoo.com/v1/finance/search"
SCREENER_PREFIX = "https://query2.finance.yahoo.com/v1/finance/screener/predefined/saved"

Answers = Iterable[CannedResponse | Exception]


def recorded_json(name: str) -> Any:
    return json.loads((YAHOO_DIR / f"{name}.json").read_text())


def recorded_meta(name: str) -> Any:
    return json.loads((YAHOO_DIR / f"{name}.meta.json").read_text())


def yahoo_routes(routes: Mapping[str, Answers]) -> CannedTransport:
    """Yahoo's cookie/crumb handshake answered, and each URL prefix in ``routes`` answered in turn."""
    return CannedTransport(
        {
            "https://fc.yahoo.com": [CannedResponse(200, b"", "text/html")],
            "https://query1.finance.yahoo.com/v1/test/getcrumb": [CannedResponse(200, b"test-crumb", "text/plain")],
            "https://query2.finance.yahoo.com/v1/test/getcrumb": [CannedResponse(200, b"test-crumb", "text/plain")],
            **{prefix: list(answers) for prefix, answers in routes.items()},
        }
    )


def yahoo_transport(quote_answers: Answers) -> CannedTransport:
    """The crumb handshake answered, and the v7 quote endpoint answered in turn."""
    return yahoo_routes({QUOTE_PREFIX: quote_answers})


def yahoo_provider(
    transport: requests.adapters.BaseAdapter,
    cache_dir: Path,
    *,
    clock: Callable[[], datetime] | None = None,
    base_url: str = DEFAULT_BASE_URL,
    source_label: str = "yahoo",
) -> YahooProvider:
    session = build_session(timeout_cap_seconds=5, transport=transport)
    if clock is None:
        return YahooProvider(session, cache_dir=str(cache_dir), base_url=base_url, source_label=source_label)
    return YahooProvider(session, cache_dir=str(cache_dir), base_url=base_url, source_label=source_label, clock=clock)


def requests_to(transport: CannedTransport, prefix: str) -> list[tuple[str, dict[str, list[str]]]]:
    """(path, query) of every request the transport saw under ``prefix`` (yfinance repeats a request
    once after a 4xx/5xx with its other cookie strategy, so an error answer is asked for twice)."""
    return [
        (urlsplit(url).path, parse_qs(urlsplit(url).query)) for url in transport.requests_seen if url.startswith(prefix)
    ]


__all__ = [
    "CHART_PREFIX",
    "QUOTE_PREFIX",
    "QUOTE_SUMMARY_PREFIX",
    "SCREENER_PREFIX",
    "SEARCH_PREFIX",
    "CannedResponse",
    "recorded",
    "recorded_json",
    "recorded_meta",
    "requests_to",
    "yahoo_provider",
    "yahoo_routes",
    "yahoo_transport",
]
