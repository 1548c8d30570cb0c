"""The replay universe's CSVs read with the csv module, independently of infra/local/replay/universe.py,
so tests compare the replay's answers with the data files themselves (never with hard-coded prices)."""

from __future__ import annotations

import csv
import functools
import gzip
import io
from pathlib import Path

from infra.local.replay.universe import STOCKS_FILE, UNIVERSE_DIR

# REPLAY_START_DAY's default (the 130th trading day), as a 0-based index.
DEFAULT_DAY_INDEX = 129
FUND_FILES = {
    "SPY": "SPY",
    "QQQ": "QQQ",
    "DIA": "DIA",
    "IWM": "IWM",
    "^GSPC": "GSPC",
    "^DJI": "DJI",
    "^IXIC": "IXIC",
    "^RUT": "RUT",
    "^VIX": "VIX",
    **{etf: etf for etf in ("XLB", "XLE", "XLF", "XLI", "XLK", "XLP", "XLRE", "XLU", "XLV", "XLY")},
}
LATE_LISTINGS = ("APTV", "DWDP", "BHF", "BHGE", "DXC")


def _rows(path: Path) -> list[dict[str, str]]:
    text = gzip.decompress(path.read_bytes()).decode() if path.suffix == ".gz" else path.read_text()
    return list(csv.DictReader(io.StringIO(text)))


@functools.cache
def rows_by_symbol() -> dict[str, dict[str, dict[str, str]]]:
    """Canonical (Yahoo) symbol → ISO date → the CSV row."""
    table: dict[str, dict[str, dict[str, str]]] = {}
    for row in _rows(UNIVERSE_DIR / STOCKS_FILE):
        table.setdefault(row["symbol"].replace(".", "-"), {})[row["date"]] = row
    for symbol, stem in FUND_FILES.items():
        for row in _rows(UNIVERSE_DIR / f"{stem}_daily_2017-01-27_2018-02-07.csv"):
            assert row["symbol"] == symbol
            table.setdefault(symbol, {})[row["date"]] = row
    return table


@functools.cache
def trading_days() -> list[str]:
    """Every date of the window, ISO, oldest first (the SPY file has them all)."""
    return sorted(rows_by_symbol()["SPY"])


def row(symbol: str, day_index: int) -> dict[str, str] | None:
    """``symbol``'s CSV row on trading day ``day_index`` (None: no bar that day)."""
    if day_index < 0:
        return None
    return rows_by_symbol().get(symbol, {}).get(trading_days()[day_index])


def close(symbol: str, day_index: int) -> float:
    found = row(symbol, day_index)
    assert found is not None, f"{symbol} has no bar on day {day_index}"
    return float(found["close"])


def first_day_index(symbol: str) -> int:
    return trading_days().index(min(rows_by_symbol()[symbol]))


def stocks() -> list[str]:
    return sorted(symbol for symbol in rows_by_symbol() if symbol not in FUND_FILES)


def change_percent(symbol: str, day_index: int) -> float | None:
    today, before = row(symbol, day_index), row(symbol, day_index - 1)
    if today is None or before is None:
        return None
    return (float(today["close"]) - float(before["close"])) / float(before["close"]) * 100
