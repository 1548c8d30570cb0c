"""Offline symbol search over the bundled S&P 500 list: the last fallback of POST /search."""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

from chalicelib.models.market import SearchResult

CONSTITUENTS_CSV = Path(__file__).resolve().parent.parent / "data" / "sp500_constituents.csv"
SOURCE_LABEL = "sp500-constituents"


@dataclass(frozen=True)
class Constituent:
    symbol: str
    name: str
    sector: str
    sub_industry: str


@functools.cache
def constituents(path: Path = CONSTITUENTS_CSV) -> tuple[Constituent, ...]:
    with path.open(newline="", encoding="utf-8") as handle:
        return tuple(
            Constituent(
                # Providers spell class shares with a dash (BRK-B); the list uses a dot (BRK.B).
                symbol=row["Symbol"].strip().replace(".", "-"),
                name=row["Security"].strip(),
                sector=row["GICS Sector"].strip(),
                sub_industry=row["GICS Sub-Industry"].strip(),
            )
            for row in csv.DictReader(handle)
        )


@functools.cache
def _listed() -> frozenset[str]:
    return frozenset(c.symbol for c in constituents())


def is_listed(symbol: str) -> bool:
    """Whether the bundled S&P 500 list holds the (normalized) symbol: known to exist without asking a vendor."""
    return symbol in _listed()


def search_constituents(query: str, limit: int) -> list[SearchResult]:
    """Exact symbol first, then symbol prefixes, then name matches (case-insensitive)."""
    needle = query.strip().lower()
    if not needle:
        return []

    def rank(item: Constituent) -> int | None:
        symbol, name = item.symbol.lower(), item.name.lower()
        if symbol == needle or symbol == needle.replace(".", "-"):
            return 0
        if symbol.startswith(needle):
            return 1
        if name.startswith(needle):
            return 2
        if needle in name:
            return 3
        return None

    ranked = sorted(
        ((r, c.symbol, c) for c in constituents() if (r := rank(c)) is not None),
        key=lambda entry: (entry[0], entry[1]),
    )
    return [
        SearchResult(symbol=c.symbol, name=c.name, exchange=None, asset_type="equity", sector=c.sector)
        for _, _, c in ranked[:limit]
    ]
