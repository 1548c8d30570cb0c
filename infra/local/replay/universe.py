"""The replay universe: 505 S&P 500 stocks (as of Feb 2018), four ETFs, ten sector SPDRs and five indices,
daily bars on the same 260 trading days (2017-01-27 .. 2018-02-07). See README.md beside this file.

Loaded once per process (``load_universe`` is cached). Local Lambda workers load it on their first replay
call, so a cold load only decompresses the stocks' CSV and finds where each symbol's rows lie; a
symbol's rows become ``DailyBar``s the first time it is asked about (all of them: well under 1 s).

Symbols are Yahoo's canonical spelling (``BRK-B``, ``BF-B``, ``^GSPC``); the data file spells class
shares with a dot (``BRK.B``), as the 2018 index list did.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

UNIVERSE_DIR = Path(__file__).resolve().parent / "data" / "universe"
STOCKS_FILE = "sp500_daily_2017-01-27_2018-02-07.csv.gz"
_WINDOW = "2017-01-27_2018-02-07"
_HEADER = "date,symbol,open,high,low,close,volume"

# Broad-market ETFs, the Select Sector SPDRs (XLC did not exist before 2018-06-19) and the indices.
MARKET_ETFS: tuple[str, ...] = ("SPY", "QQQ", "DIA", "IWM")
SECTOR_ETFS: tuple[str, ...] = ("XLB", "XLE", "XLF", "XLI", "XLK", "XLP", "XLRE", "XLU", "XLV", "XLY")
INDICES: tuple[str, ...] = ("^GSPC", "^DJI", "^IXIC", "^RUT", "^VIX")


def yahoo_symbol(raw: str) -> str:
    """The data's spelling onto Yahoo's: class shares with a dash (BRK.B → BRK-B)."""
    return raw.strip().upper().replace(".", "-")


def series_file(symbol: str) -> str:
    """The CSV (under data/universe/) holding ``symbol``'s bars."""
    if symbol in MARKET_ETFS or symbol in SECTOR_ETFS or symbol in INDICES:
        return f"{symbol.removeprefix('^')}_daily_{_WINDOW}.csv"
    return STOCKS_FILE


@dataclass(frozen=True, slots=True)
class DailyBar:
    """One real daily bar. ``open``/``high``/``low`` are None where the source left them empty
    (BHF on 2017-07-26): the close is kept, the missing fields are never made up."""

    day: date
    close: float
    volume: int
    open: float | None = None
    high: float | None = None
    low: float | None = None


def _row(line: str, source: str, calendar: Mapping[str, date] | None = None) -> tuple[str, str, DailyBar]:
    """(raw symbol, ISO date, bar) of one ``date,symbol,open,high,low,close,volume`` line. ``calendar``
    (ISO → date) spares re-parsing the window's dates (most of a row's cost)."""
    try:
        day, symbol, open_, high, low, close, volume = line.split(",")
        known = calendar.get(day) if calendar is not None else None
        return (
            symbol,
            day,
            DailyBar(
                day=known or date.fromisoformat(day),
                close=float(close),
                volume=int(volume),
                open=float(open_) if open_ else None,
                high=float(high) if high else None,
                low=float(low) if low else None,
            ),
        )
    except ValueError as exc:
        raise ValueError(f"{source}: unreadable row {line!r} ({exc})") from None


@dataclass(frozen=True, slots=True)
class _Block:
    """Where one symbol's rows lie in its file's text (parsed on first use): ``count`` lines ending on
    the last trading day, so the symbol's first bar is day ``start`` = days - count."""

    raw_symbol: str
    source: str
    text: str
    begin: int
    end: int
    start: int


def _blocks(text: str, source: str, last_day: str, day_count: int) -> list[_Block]:
    """One block per symbol of a ``date,symbol,...`` CSV grouped by symbol and sorted by date. Every
    symbol of the window trades up to its last day, so a block ends on the line dated ``last_day``:
    finding those 505 lines is all the scanning a cold load does."""
    header, newline, _ = text.partition("\n")
    if header.strip() != _HEADER or not newline:
        raise ValueError(f"{source}: unexpected header {header.strip()!r}")
    marker = f"\n{last_day},"
    blocks: list[_Block] = []
    begin = len(header) + 1
    while begin < len(text):
        hit = text.find(marker, begin - 1)
        if hit < 0:
            raise ValueError(f"{source}: rows after offset {begin} do not end on {last_day}")
        end = text.find("\n", hit + 1)
        end = len(text) if end < 0 else end
        count = text.count("\n", begin, end) + 1
        symbol = text[hit + len(marker) : text.index(",", hit + len(marker))]
        if count > day_count:
            raise ValueError(f"{source}: {symbol} has more rows than the window has days")
        blocks.append(_Block(symbol, source, text, begin, end, day_count - count))
        begin = end + 1
        while begin < len(text) and text[begin] in "\r\n":
            begin += 1
    return blocks


class ReplayUniverse:
    """Every symbol's bars by trading-day index (0 = 2017-01-27 .. 259 = 2018-02-07)."""

    def __init__(self, directory: Path = UNIVERSE_DIR) -> None:
        # The funds' files hold every trading day of the window: they define the calendar.
        fund_rows: dict[str, list[DailyBar]] = {}
        for fund in (*MARKET_ETFS, *SECTOR_ETFS, *INDICES):
            name = series_file(fund)
            header, _, body = (directory / name).read_text(encoding="ascii").partition("\n")
            if header.strip() != _HEADER:
                raise ValueError(f"{name}: unexpected header {header.strip()!r}")
            rows = [_row(line, name) for line in body.split("\n") if line.strip()]
            if any(raw != fund for raw, _, _ in rows):
                raise ValueError(f"{name}: rows for another symbol than {fund}")
            fund_rows[fund] = [bar for _, _, bar in rows]
        self.days: tuple[date, ...] = tuple(bar.day for bar in fund_rows[MARKET_ETFS[0]])
        if list(self.days) != sorted(set(self.days)):
            raise ValueError(f"{series_file(MARKET_ETFS[0])}: dates are not strictly increasing")
        for fund, bars in fund_rows.items():
            if tuple(bar.day for bar in bars) != self.days:
                raise ValueError(f"{series_file(fund)}: its dates differ from {series_file(MARKET_ETFS[0])}'s")
        self._index = {day: index for index, day in enumerate(self.days)}
        self._calendar = {day.isoformat(): day for day in self.days}
        text = gzip.decompress((directory / STOCKS_FILE).read_bytes()).decode("ascii")
        blocks = _blocks(text, STOCKS_FILE, self.days[-1].isoformat(), len(self.days))
        self._blocks: dict[str, _Block] = {}
        for block in blocks:
            symbol = yahoo_symbol(block.raw_symbol)
            if symbol in self._blocks or symbol in fund_rows:
                raise ValueError(f"{STOCKS_FILE}: {block.raw_symbol} appears twice (rows not grouped by symbol)")
            self._blocks[symbol] = block
        self._start = {symbol: block.start for symbol, block in self._blocks.items()} | dict.fromkeys(fund_rows, 0)
        self._bars: dict[str, tuple[DailyBar | None, ...]] = {fund: tuple(bars) for fund, bars in fund_rows.items()}
        self.stocks: tuple[str, ...] = tuple(self._blocks)
        self.market_etfs, self.sector_etfs, self.indices = MARKET_ETFS, SECTOR_ETFS, INDICES
        self.etfs: tuple[str, ...] = MARKET_ETFS + SECTOR_ETFS
        self.symbols: tuple[str, ...] = self.stocks + self.etfs + self.indices
        self._stock_set = frozenset(self.stocks)
        self._lines: dict[str, list[str]] = {}

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._start

    def is_stock(self, symbol: str) -> bool:
        return symbol in self._stock_set

    def index_of(self, day: date) -> int:
        """The trading-day index of ``day``; ValueError when it is not a trading day of the window."""
        try:
            return self._index[day]
        except KeyError:
            raise ValueError(f"{day.isoformat()} is not a trading day of the replay window") from None

    def first_index(self, symbol: str) -> int:
        """The day index of ``symbol``'s first bar (KeyError outside the universe)."""
        return self._start[symbol]

    def listed_on(self, symbol: str, day_index: int) -> bool:
        start = self._start.get(symbol)
        return start is not None and start <= day_index < len(self.days)

    def trading_on(self, day_index: int) -> list[str]:
        """Every symbol (stocks, ETFs, indices) with a bar on day ``day_index``."""
        return [symbol for symbol in self.symbols if self.listed_on(symbol, day_index)]

    def stocks_trading_on(self, day_index: int) -> list[str]:
        return [symbol for symbol in self.stocks if self.listed_on(symbol, day_index)]

    def bar(self, symbol: str, day_index: int) -> DailyBar | None:
        """``symbol``'s bar on day ``day_index`` (None before its listing or outside the universe)."""
        if not self.listed_on(symbol, day_index):
            return None
        cached = self._bars.get(symbol)
        if cached is not None:
            return cached[day_index]
        # One row, not the whole series: the screeners read two days of every stock.
        block = self._blocks[symbol]
        lines = self._lines.get(symbol)
        if lines is None:
            lines = self._lines[symbol] = block.text[block.begin : block.end].split("\n")
        raw, _, bar = _row(lines[day_index - block.start], block.source, self._calendar)
        if raw != block.raw_symbol or bar.day != self.days[day_index]:
            raise ValueError(f"{block.source}: {block.raw_symbol}'s rows are not one run of the window's days")
        return bar

    def bars(self, symbol: str) -> tuple[DailyBar | None, ...]:
        """``symbol``'s bars by day index, one entry per trading day: None before its listing
        (KeyError outside the universe). A stock's rows are parsed on first use and checked to be
        its own, on the window's days."""
        cached = self._bars.get(symbol)
        if cached is not None:
            return cached
        block = self._blocks[symbol]
        rows = [_row(line, block.source, self._calendar) for line in block.text[block.begin : block.end].split("\n")]
        listed = self.days[block.start :]
        for (raw, _, bar), day in zip(rows, listed, strict=True):
            if raw != block.raw_symbol or bar.day != day:
                raise ValueError(f"{block.source}: {block.raw_symbol}'s rows are not one run of the window's days")
        built = (None,) * block.start + tuple(bar for _, _, bar in rows)
        self._bars[symbol] = built
        return built

    def history(self, symbol: str, through: int) -> list[DailyBar]:
        """``symbol``'s bars from its first day up to and including day ``through`` (never later)."""
        return [bar for bar in self.bars(symbol)[: through + 1] if bar is not None]

    def source_of(self, symbol: str) -> str:
        """The data file (relative to data/) a symbol's bars come from."""
        return f"universe/{series_file(symbol)}"


@functools.cache
def load_universe() -> ReplayUniverse:
    """The universe, parsed once per process."""
    return ReplayUniverse()
