"""The list-valued settings (comma-separated in the environment): their parsers and default values."""

from __future__ import annotations

import re
from typing import Any

from chalicelib.errors import ValidationFailed
from chalicelib.models.market import normalize_symbol

__all__ = ["DEFAULT_POPULAR_SYMBOLS", "REPLAY_POPULAR_SYMBOLS", "split_origins", "split_symbols"]


def split_origins(value: Any) -> Any:
    if isinstance(value, str):
        origins = tuple(part.strip().rstrip("/") for part in value.split(",") if part.strip())
        for origin in origins:
            if origin == "*" or not re.fullmatch(r"https?://[A-Za-z0-9.\-]+(:\d{1,5})?", origin):
                raise ValueError(f"{origin!r} is not an origin like https://dashboard.example.com (no '*')")
        return origins
    return value


# The most-watched US large caps and ETFs (tickers as Yahoo spells them).
DEFAULT_POPULAR_SYMBOLS = (
    "AAPL", "MSFT", "NVDA", "GOOGL", "AMZN", "META", "TSLA", "BRK-B", "JPM", "V", "SPY", "QQQ",
)  # fmt: skip
# The same list inside the replay universe (S&P 500 of Feb 2018: Meta was still FB, Tesla not yet listed).
REPLAY_POPULAR_SYMBOLS = (
    "AAPL", "MSFT", "NVDA", "GOOGL", "AMZN", "FB", "BRK-B", "JPM", "V", "XOM", "SPY", "QQQ",
)  # fmt: skip


def split_symbols(value: Any) -> Any:
    if isinstance(value, str):
        symbols = []
        for part in value.split(","):
            if part.strip():
                try:
                    symbols.append(normalize_symbol(part))
                except ValidationFailed as exc:
                    raise ValueError(exc.message) from None
        return tuple(dict.fromkeys(symbols))
    return value
