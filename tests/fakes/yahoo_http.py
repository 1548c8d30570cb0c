"""Helpers to answer yfinance's HTTP calls with recorded Yahoo responses (tests only)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.yahoo import YahooProvider
from infra.local.replay.transport import YAHOO_DIR, CannedResponse, CannedTransport, recorded

QUOTE_PREFIX = "https://query1.finance.yahoo.com/v7/finance/quote"


def recorded_json(name: str) -> Any:
    return json.loads((YAHOO_DIR / f"{name}.json").read_text())


def yahoo_transport(quote_answers: Iterable[CannedResponse | Exception]) -> CannedTransport:
    """Yahoo's cookie/crumb handshake answered, and the v7 quote endpoint answered in turn."""
    return CannedTransport(
        {
            "https://fc.yahoo.com": [CannedResponse(200, b"", "text/html")],
            "https://query1.finance.yahoo.com/v1/test/getcrumb": [CannedResponse(200, b"test-crumb", "text/plain")],
            "https://query2.finance.yahoo.com/v1/test/getcrumb": [CannedResponse(200, b"test-crumb", "text/plain")],
            QUOTE_PREFIX: list(quote_answers),
        }
    )


def yahoo_provider(transport: requests.adapters.BaseAdapter, cache_dir: Path) -> YahooProvider:
    session = build_session(timeout_cap_seconds=5, transport=transport)
    return YahooProvider(session, cache_dir=str(cache_dir))


__all__ = ["CannedResponse", "recorded", "recorded_json", "yahoo_provider", "yahoo_transport"]
