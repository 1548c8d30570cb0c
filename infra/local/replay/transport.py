"""requests transport adapters that answer provider HTTP calls offline.

Mounted into the provider's requests.Session (see chalicelib/adapters/http.py), they let the real
adapter code — yfinance included — run offline: only the bytes on the wire are made here.
See README.md beside this file for what is served and where each file came from.

``YahooReplayTransport`` answers Yahoo's endpoints from the replay universe (universe.py: 505 S&P 500
stocks, ETFs and indices on 260 real trading days). Every answer is for one replay day: the day index
is ``start + k mod (days - start)`` where k is the replay clock's step (REPLAY_STEP_SECONDS /
REPLAY_EPOCH; no clock: the start day) and start is REPLAY_START_DAY (default: the 130th day).
On that day every endpoint agrees: a symbol any answer names can be quoted.
"""

from __future__ import annotations

import calendar
import copy
import csv
import functools
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from infra.local.replay.universe import DailyBar, ReplayUniverse, load_universe

DATA_DIR = Path(__file__).resolve().parent / "data"
YAHOO_DIR = DATA_DIR / "yahoo"
CONSTITUENTS_CSV = DATA_DIR / "sp500_constituents.csv"

# Placeholder for Yahoo's cookie/crumb handshake: plumbing, not market data (recordings redact it).
REPLAY_CRUMB = "replay-crumb"
_NEW_YORK = ZoneInfo("America/New_York")
REPLAY_STEP_ENV = "REPLAY_STEP_SECONDS"
REPLAY_EPOCH_ENV = "REPLAY_EPOCH"
REPLAY_START_DAY_ENV = "REPLAY_START_DAY"
# The 130th trading day (1-based): half a year of history lies behind the first replay day.
DEFAULT_START_DAY = 130


@dataclass(frozen=True)
class CannedResponse:
    status: int
    body: bytes
    content_type: str = "application/json;charset=utf-8"
    headers: Mapping[str, str] | None = None


def make_response(request: requests.PreparedRequest, canned: CannedResponse) -> requests.Response:
    response = requests.Response()
    response.status_code = canned.status
    response._content = canned.body
    response.headers = CaseInsensitiveDict({"Content-Type": canned.content_type, **(canned.headers or {})})
    response.url = request.url or ""
    response.request = request
    response.encoding = "utf-8"
    response.reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}.get(canned.status, "")
    return response


def json_body(payload: object) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def recorded(name: str, directory: Path = YAHOO_DIR) -> CannedResponse:
    """A recorded response exactly as captured: its body, HTTP status and content type."""
    meta = json.loads((directory / f"{name}.meta.json").read_text())
    body = (directory / meta["body_file"]).read_bytes()
    content_type = (meta.get("headers") or {}).get("content-type", "application/json")
    return CannedResponse(status=int(meta["status"]), body=body, content_type=content_type)


# --- the replay day ---------------------------------------------------------------------------------


def _wall_clock() -> float:
    return datetime.now(UTC).timestamp()


@dataclass(frozen=True)
class ReplayClock:
    """Replay step k = floor((now - epoch) / step_seconds), never below 0; epoch in epoch seconds."""

    step_seconds: float
    epoch: float
    now: Callable[[], float] = field(default=_wall_clock, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.step_seconds < math.inf:
            raise ValueError(f"{REPLAY_STEP_ENV} must be a positive number of seconds, got {self.step_seconds!r}")
        if not math.isfinite(self.epoch):
            raise ValueError(f"{REPLAY_EPOCH_ENV} must be a number of epoch seconds, got {self.epoch!r}")

    def step(self) -> int:
        return max(0, math.floor((self.now() - self.epoch) / self.step_seconds))

    def step_started_at(self, step: int) -> int:
        """The wall-clock time (epoch seconds) at which ``step`` began."""
        return int(self.epoch + step * self.step_seconds)


def replay_clock_from_env(env: Mapping[str, str], *, created_at: float | None = None) -> ReplayClock | None:
    """REPLAY_STEP_SECONDS (unset or 0: None, the frozen replay) and REPLAY_EPOCH (default:
    ``created_at``, else now). A bad value is a ValueError naming the variable."""
    raw_step = (env.get(REPLAY_STEP_ENV) or "").strip()
    try:
        step_seconds = float(raw_step) if raw_step else 0.0
    except ValueError:
        step_seconds = math.nan
    if step_seconds == 0:
        return None
    if not 0 < step_seconds < math.inf:
        raise ValueError(f"{REPLAY_STEP_ENV} must be a positive number of seconds (0: off), got {raw_step!r}")
    raw_epoch = (env.get(REPLAY_EPOCH_ENV) or "").strip()
    if not raw_epoch:
        return ReplayClock(step_seconds, _wall_clock() if created_at is None else created_at)
    try:
        epoch = float(raw_epoch)
    except ValueError:
        epoch = math.nan
    if not math.isfinite(epoch):
        raise ValueError(f"{REPLAY_EPOCH_ENV} must be a number of epoch seconds, got {raw_epoch!r}")
    return ReplayClock(step_seconds, epoch)


@dataclass(frozen=True)
class ReplayCalendar:
    """Which trading day replay step k shows: ``start + k mod (days - start)``, so the replay walks from
    the start day to the last day and wraps back to the start day (never to the days before it, which
    are the start day's history). No step (the frozen replay): the start day."""

    days: tuple[date, ...]
    start: int  # 0-based day index

    def __post_init__(self) -> None:
        if not 0 <= self.start < len(self.days):
            raise ValueError(f"the replay start day index {self.start} is outside 0..{len(self.days) - 1}")

    def day_index(self, step: int | None) -> int:
        if step is None:
            return self.start
        return self.start + step % (len(self.days) - self.start)


def replay_start_index(raw: str | None, days: Sequence[date]) -> int:
    """REPLAY_START_DAY onto a 0-based day index: a 1-based trading-day number (1..len(days)) or an ISO
    date that is a trading day of the window; unset: DEFAULT_START_DAY. ValueError naming the variable."""
    text = (raw or "").strip()
    if not text:
        return DEFAULT_START_DAY - 1
    window = f"{days[0].isoformat()}..{days[-1].isoformat()}"
    if text.isdigit():
        number = int(text)
        if not 1 <= number <= len(days):
            raise ValueError(
                f"{REPLAY_START_DAY_ENV} must be a trading-day number 1..{len(days)} or a trading day "
                f"{window} (YYYY-MM-DD), got {text!r}"
            )
        return number - 1
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{REPLAY_START_DAY_ENV} must be a trading-day number 1..{len(days)} or a date {window} (YYYY-MM-DD), "
            f"got {text!r}"
        ) from None
    if day not in days:
        raise ValueError(f"{REPLAY_START_DAY_ENV}={text} is not a trading day of the replay window {window}")
    return days.index(day)


def replay_calendar_from_env(env: Mapping[str, str], universe: ReplayUniverse | None = None) -> ReplayCalendar:
    days = (universe or load_universe()).days
    return ReplayCalendar(days, replay_start_index(env.get(REPLAY_START_DAY_ENV), days))


# --- Yahoo payloads from real bars --------------------------------------------------------------------


def _close_time(day: date) -> int:
    """Epoch seconds of ``day``'s 16:00 New York close."""
    return int(datetime.combine(day, time(16, 0), tzinfo=_NEW_YORK).timestamp())


def _quote_type(universe: ReplayUniverse, symbol: str) -> str:
    if symbol in universe.indices:
        return "INDEX"
    return "ETF" if symbol in universe.etfs else "EQUITY"


def quote_item(
    universe: ReplayUniverse, symbol: str, day_index: int, *, market_time: int, name: str | None
) -> dict[str, Any] | None:
    """A v7-quote-shaped item for ``symbol`` on day ``day_index`` (None: no bar that day): that day's close,
    open, high, low and volume, the previous day's close and the change between them, all as published.
    On a symbol's first listed day there is no previous close: it and the change are left out, as are
    open/high/low where the source has none. ``replayBarDate`` (ignored by the parser) is the bar's date."""
    bar = universe.bar(symbol, day_index)
    if bar is None:
        return None
    item: dict[str, Any] = {
        "symbol": symbol,
        "quoteType": _quote_type(universe, symbol),
        "marketState": "CLOSED",
        "currency": "USD",
        "regularMarketPrice": bar.close,
        "regularMarketVolume": bar.volume,
        "regularMarketTime": market_time,
        "replayBarDate": bar.day.isoformat(),
    }
    previous = universe.bar(symbol, day_index - 1) if day_index > 0 else None
    if previous is not None:
        change = bar.close - previous.close
        item["regularMarketPreviousClose"] = previous.close
        item["regularMarketChange"] = change
        item["regularMarketChangePercent"] = change / previous.close * 100
    for key, value in (
        ("regularMarketOpen", bar.open),
        ("regularMarketDayHigh", bar.high),
        ("regularMarketDayLow", bar.low),
    ):
        if value is not None:
            item[key] = value
    if name:
        item["shortName"] = name
        item["longName"] = name
    return item


# Yahoo's chart ranges (the standard Period values), counted back from the replay day.
_RANGE_MONTHS = {"1mo": 1, "3mo": 3, "6mo": 6, "1y": 12, "2y": 24, "5y": 60, "10y": 120}
_RANGE_BARS = {"1d": 1, "5d": 5}
_DAILY_OR_LONGER = ("1d", "1wk", "1mo")
_INTRADAY = ("1m", "2m", "5m", "15m", "30m", "60m", "90m", "1h")
# Wikipedia footnote markers left in the constituents list ("Virginia[2]").
_FOOTNOTE = re.compile(r"\[\d+\]")


def _months_before(day: date, months: int) -> date:
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def bars_in_range(bars: Sequence[DailyBar], chart_range: str) -> list[DailyBar] | None:
    """The bars of ``chart_range`` counted back from the last bar's date (None: not a Yahoo range).
    1d and 5d are the last 1 and 5 sessions; month and year ranges are calendar spans; ytd starts on
    1 January of the last bar's year; max is everything."""
    if not bars:
        return []
    last = bars[-1].day
    if chart_range in _RANGE_BARS:
        return list(bars[-_RANGE_BARS[chart_range] :])
    if chart_range in _RANGE_MONTHS:
        cutoff = _months_before(last, _RANGE_MONTHS[chart_range])
        return [bar for bar in bars if bar.day > cutoff]
    if chart_range == "ytd":
        return [bar for bar in bars if bar.day.year == last.year]
    if chart_range == "max":
        return list(bars)
    return None


def _highest(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return max(known) if known else None


def _lowest(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return min(known) if known else None


def resample(bars: Sequence[DailyBar], interval: str) -> list[DailyBar]:
    """Daily bars as 1d (unchanged), 1wk (ISO weeks) or 1mo (calendar months): first open, highest high,
    lowest low (of the days that have them), last close, summed volume; each dated by its first session."""
    if interval == "1d":
        return list(bars)
    groups: dict[tuple[int, int], list[DailyBar]] = {}
    for bar in bars:
        key = bar.day.isocalendar()[:2] if interval == "1wk" else (bar.day.year, bar.day.month)
        groups.setdefault((key[0], key[1]), []).append(bar)
    return [
        DailyBar(
            day=group[0].day,
            open=group[0].open,
            high=_highest(bar.high for bar in group),
            low=_lowest(bar.low for bar in group),
            close=group[-1].close,
            volume=sum(bar.volume for bar in group),
        )
        for group in groups.values()
    ]


def chart_from_daily(
    symbol: str,
    bars: Sequence[DailyBar],
    *,
    chart_range: str,
    interval: str,
    name: str | None,
    source: str,
    replay_day: date,
) -> dict[str, Any]:
    """A v8-chart-shaped payload from real daily bars (values unchanged, a missing open/high/low as null,
    as Yahoo sends gaps; bars stamped at the session's 09:30 New York open, as Yahoo stamps daily bars).
    ``meta.replaySource`` names the CSV, ``meta.replayDay`` the replay day (keys the parser ignores)."""
    stamps = [int(datetime.combine(bar.day, time(9, 30), tzinfo=_NEW_YORK).timestamp()) for bar in bars]
    meta: dict[str, Any] = {
        "currency": "USD",
        "symbol": symbol,
        "exchangeTimezoneName": "America/New_York",
        "dataGranularity": interval,
        "range": chart_range,
        "replaySource": source,
        "replayDay": replay_day.isoformat(),
    }
    if name:
        meta["longName"] = name
    indicators: dict[str, Any] = {
        "quote": [
            {
                "open": [bar.open for bar in bars],
                "high": [bar.high for bar in bars],
                "low": [bar.low for bar in bars],
                "close": [bar.close for bar in bars],
                "volume": [bar.volume for bar in bars],
            }
        ]
    }
    return {"chart": {"result": [{"meta": meta, "timestamp": stamps, "indicators": indicators}], "error": None}}


@dataclass(frozen=True)
class Constituent:
    symbol: str
    name: str
    sector: str
    sub_industry: str
    headquarters: str | None
    date_added: date


def read_constituents(path: Path = CONSTITUENTS_CSV) -> dict[str, Constituent]:
    """The constituents list by Yahoo symbol (the list spells class shares with a dot: BRK.B → BRK-B)."""
    rows: dict[str, Constituent] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            symbol = row["Symbol"].strip().upper().replace(".", "-")
            location = _FOOTNOTE.sub("", row.get("Headquarters Location") or "").strip()
            rows[symbol] = Constituent(
                symbol=symbol,
                name=row["Security"],
                sector=row["GICS Sector"],
                sub_industry=row["GICS Sub-Industry"],
                headquarters=location if location and location.lower() != "none" else None,
                date_added=date.fromisoformat(row["Date added"]),
            )
    return rows


class YahooReplayData:
    """What the replay serves besides the bars, loaded once: the constituents list (names, sectors) and
    the news items of the recorded search responses."""

    def __init__(self, universe: ReplayUniverse | None = None) -> None:
        self.universe = universe or load_universe()
        known = read_constituents()
        # The list is a 2020s one (META, not FB): a ticker it lacks has no name or sector here. A row
        # added to the index after the window may describe another company than the one that held the
        # ticker then (FOX was Twenty-First Century Fox, IR Ingersoll-Rand plc): left out too, never guessed.
        last_day = self.universe.days[-1]
        self.constituents = {
            symbol: row for symbol, row in known.items() if symbol in self.universe and row.date_added <= last_day
        }
        self.news: list[dict[str, Any]] = []
        seen: set[str] = set()
        for meta_path in sorted(YAHOO_DIR.glob("search_*.meta.json")):
            meta = json.loads(meta_path.read_text())
            if int(meta["status"]) != 200:
                continue
            for item in json.loads((YAHOO_DIR / meta["body_file"]).read_text()).get("news", []):
                if item.get("uuid") not in seen:
                    seen.add(item.get("uuid"))
                    self.news.append(item)

    def name(self, symbol: str) -> str | None:
        row = self.constituents.get(symbol)
        return row.name if row else None

    def search_quotes(self, query: str, day_index: int, limit: int) -> list[dict[str, Any]]:
        """Symbols listed on the day matching ``query``: exact symbol, then symbol prefix, then
        constituent-name substring (case-insensitive), carrying only what the data says of them."""
        needle = query.strip().upper()
        symbol_needle = needle.replace(".", "-")
        ranked: list[tuple[int, str]] = []
        for symbol in self.universe.symbols:
            name = self.name(symbol)
            if symbol == symbol_needle or symbol.removeprefix("^") == symbol_needle:
                rank = 0
            elif symbol.startswith(symbol_needle) or symbol.removeprefix("^").startswith(symbol_needle):
                rank = 1
            elif name is not None and needle in name.upper():
                rank = 2
            else:
                continue
            if self.universe.listed_on(symbol, day_index):
                ranked.append((rank, symbol))
        ranked.sort()
        return [self._search_item(symbol) for _, symbol in ranked[:limit]]

    def _search_item(self, symbol: str) -> dict[str, Any]:
        quote_type = _quote_type(self.universe, symbol)
        item: dict[str, Any] = {
            "symbol": symbol,
            "quoteType": quote_type,
            "typeDisp": {"EQUITY": "Equity", "ETF": "ETF", "INDEX": "Index"}[quote_type],
            "isYahooFinance": True,
        }
        row = self.constituents.get(symbol)
        if row is not None:
            item.update(shortname=row.name, longname=row.name, sector=row.sector, industry=row.sub_industry)
        return item

    def news_about(self, symbol: str, day_index: int, limit: int) -> list[dict[str, Any]]:
        """Recorded news items naming ``symbol``, their related tickers cut to those listed on the day
        (so that every symbol an answer names can be quoted that day)."""
        if not self.universe.listed_on(symbol, day_index):
            return []
        found: list[dict[str, Any]] = []
        for item in self.news:
            if symbol in (item.get("relatedTickers") or []):
                copied = copy.deepcopy(item)
                copied["relatedTickers"] = [
                    ticker for ticker in item["relatedTickers"] if self.universe.listed_on(ticker, day_index)
                ]
                found.append(copied)
        return found[:limit]


@functools.cache
def yahoo_replay_data() -> YahooReplayData:
    return YahooReplayData()


def _first(query: Mapping[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _count(query: Mapping[str, list[str]], key: str, default: int) -> int | None:
    raw = _first(query, key)
    if raw is None:
        return default
    return int(raw) if raw.isdigit() else None


def _replay_missing(url: str) -> CannedResponse:
    """The replay's answer for an endpoint or parameter it does not serve (never a per-symbol miss)."""
    return CannedResponse(404, json_body({"error": f"no replay answer for {url}"}))


def _chart_error(status: int, code: str, description: str) -> CannedResponse:
    """Yahoo's chart error shape (as in chart_SI_404_delisted, chart_BEKE_400_no_data_for_range)."""
    return CannedResponse(
        status, json_body({"chart": {"result": None, "error": {"code": code, "description": description}}})
    )


def not_listed_reason(symbols: Sequence[str], day: date) -> str:
    """The replay's reason for a universe symbol without a bar on the replay day."""
    return f"{', '.join(symbols)} {'was' if len(symbols) == 1 else 'were'} not yet listed on {day.isoformat()} (replay)"


# Predefined screeners the replay computes from the day's bars: scrIds → (title, canonical name).
_SCREENERS = {
    "day_gainers": ("Day Gainers", "DAY_GAINERS"),
    "day_losers": ("Day Losers", "DAY_LOSERS"),
    "most_actives": ("Most Actives", "MOST_ACTIVES"),
}


class YahooReplayTransport(BaseAdapter):
    """Answers yfinance's Yahoo calls for the replay day; anything else is a 404 naming the URL.

    ``clock``: a ReplayClock stepping the replay day, None for the frozen replay (always the start day),
    or "env" (the default): REPLAY_STEP_SECONDS / REPLAY_EPOCH, read now (see replay_clock_from_env).
    ``calendar``: the ReplayCalendar (start day), or "env": REPLAY_START_DAY, read now."""

    def __init__(
        self,
        data: YahooReplayData | None = None,
        *,
        clock: ReplayClock | Literal["env"] | None = "env",
        calendar: ReplayCalendar | Literal["env"] = "env",
    ) -> None:
        super().__init__()
        self._data = data or yahoo_replay_data()
        self.universe = self._data.universe
        self.clock = replay_clock_from_env(os.environ, created_at=_wall_clock()) if clock == "env" else clock
        self.calendar = replay_calendar_from_env(os.environ, self.universe) if calendar == "env" else calendar
        self.requests_seen: list[str] = []

    # --- the replay day -----------------------------------------------------------------------------

    def _step(self) -> int | None:
        return None if self.clock is None else self.clock.step()

    def replay_day_index(self) -> int:
        """The trading-day index every answer is for right now."""
        return self.calendar.day_index(self._step())

    def replay_day(self) -> date:
        """The trading day every answer is for right now."""
        return self.universe.days[self.replay_day_index()]

    def _market_time(self, step: int | None, day_index: int) -> int:
        """With the clock: the wall-clock time the step began (the pipeline's freshness is measured
        against it); frozen: the replay day's 16:00 New York close."""
        if self.clock is None or step is None:
            return _close_time(self.universe.days[day_index])
        return self.clock.step_started_at(step)

    def quote_item(self, symbol: str, step: int | None = None) -> dict[str, Any] | None:
        """The v7 quote item for ``symbol`` at ``step`` (default: the current step); None when the
        symbol has no bar that day."""
        step = self._step() if step is None else step
        index = self.calendar.day_index(step)
        item = quote_item(
            self.universe,
            symbol,
            index,
            market_time=self._market_time(step, index),
            name=self._data.name(symbol),
        )
        if item is not None and step is not None:
            item["replayStep"] = step
        return item

    # --- dispatch -----------------------------------------------------------------------------------

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]  # noqa: ARG002
        url = request.url or ""
        self.requests_seen.append(url)
        parts = urlsplit(url)
        host, path = parts.hostname or "", parts.path
        query = parse_qs(parts.query)
        if host == "fc.yahoo.com":
            return make_response(request, CannedResponse(200, b"", "text/html"))
        if not host.endswith("finance.yahoo.com"):
            return make_response(request, _replay_missing(url))
        if path == "/v1/test/getcrumb":
            return make_response(request, CannedResponse(200, REPLAY_CRUMB.encode(), "text/plain"))
        # One step per request: every symbol of a batch, and every bar of a chart, is of the same day.
        step = self._step()
        if path == "/v7/finance/quote":
            return make_response(request, self._quote(query, step))
        if path.startswith("/v8/finance/chart/"):
            return make_response(request, self._chart(_path_symbol(path), query, step))
        if path.startswith("/v10/finance/quoteSummary/"):
            return make_response(request, self._quote_summary(_path_symbol(path), query, url, step))
        if path == "/v1/finance/search":
            return make_response(request, self._search(query, url, step))
        if path == "/v1/finance/screener/predefined/saved":
            return make_response(request, self._screener(query, url, step))
        return make_response(request, _replay_missing(url))

    # --- endpoints ----------------------------------------------------------------------------------

    def _quote(self, query: Mapping[str, list[str]], step: int | None) -> CannedResponse:
        """Listed symbols get an item; others are left out, as Yahoo leaves out unknown symbols
        (quote_SIX_unknown_symbol_empty). Universe symbols not yet listed are also named in the
        answer's ``error`` (code "Not Found"), which says why."""
        symbols = [s.strip().upper() for s in ",".join(query.get("symbols", [])).split(",") if s.strip()]
        index = self.calendar.day_index(step)
        items: list[dict[str, Any]] = []
        not_listed: list[str] = []
        for symbol in dict.fromkeys(symbols):
            item = self.quote_item(symbol, step)
            if item is not None:
                items.append(item)
            elif symbol in self.universe:
                not_listed.append(symbol)
        error = (
            {"code": "Not Found", "description": not_listed_reason(not_listed, self.universe.days[index])}
            if not_listed
            else None
        )
        return CannedResponse(200, json_body({"quoteResponse": {"result": items, "error": error}}))

    def _chart(self, symbol: str, query: Mapping[str, list[str]], step: int | None) -> CannedResponse:
        interval = _first(query, "interval") or "1d"
        chart_range = _first(query, "range") or "1mo"
        if symbol not in self.universe:
            return recorded("chart_SI_404_delisted")
        index = self.calendar.day_index(step)
        day = self.universe.days[index]
        if not self.universe.listed_on(symbol, index):
            return _chart_error(
                404, "Not Found", f"No data found, symbol may be delisted ({not_listed_reason([symbol], day)})"
            )
        if interval in _INTRADAY:
            return _chart_error(400, "Bad Request", f"replay has daily bars only: no {interval} bars for {symbol}")
        if interval not in _DAILY_OR_LONGER:
            return _chart_error(422, "Unprocessable Entity", f"Invalid input - interval={interval} is not supported")
        bars = bars_in_range(self.universe.history(symbol, index), chart_range)
        if bars is None:
            return _chart_error(422, "Unprocessable Entity", f"Invalid input - range={chart_range} is not supported")
        payload = chart_from_daily(
            symbol,
            resample(bars, interval),
            chart_range=chart_range,
            interval=interval,
            name=self._data.name(symbol),
            source=self.universe.source_of(symbol),
            replay_day=day,
        )
        return CannedResponse(200, json_body(payload))

    def _quote_summary(self, symbol: str, query: Mapping[str, list[str]], url: str, step: int | None) -> CannedResponse:
        """Profile modules from the constituents list (name, sector, sub-industry as industry, HQ);
        what it does not say is left out. A universe symbol it does not know (FB, ETFs, indices) gets an
        empty result item: the adapter reads that as "no data", not as an unknown symbol."""
        modules = [m.strip() for m in ",".join(query.get("modules", [])).split(",") if m.strip()]
        if not modules:
            return _replay_missing(url)
        if symbol not in self.universe:
            return recorded("quoteSummary_assetProfile_GC_F_404")
        index = self.calendar.day_index(step)
        if not self.universe.listed_on(symbol, index):
            error = {"code": "Not Found", "description": not_listed_reason([symbol], self.universe.days[index])}
            return CannedResponse(404, json_body({"quoteSummary": {"result": None, "error": error}}))
        found: dict[str, Any] = {}
        row = self._data.constituents.get(symbol)
        if row is not None:
            for module in modules:
                if module in ("assetProfile", "summaryProfile"):
                    profile: dict[str, Any] = {"sector": row.sector, "industry": row.sub_industry}
                    if row.headquarters:
                        profile["headquartersLocation"] = row.headquarters
                    found[module] = profile
                elif module == "price":
                    found[module] = {
                        "symbol": symbol,
                        "longName": row.name,
                        "quoteType": _quote_type(self.universe, symbol),
                    }
        return CannedResponse(200, json_body({"quoteSummary": {"result": [found], "error": None}}))

    def _search(self, query: Mapping[str, list[str]], url: str, step: int | None) -> CannedResponse:
        text = (_first(query, "q") or "").strip()
        if not text:
            return recorded("search_missing_q_400")
        quotes_count, news_count = _count(query, "quotesCount", 6), _count(query, "newsCount", 4)
        if quotes_count is None or news_count is None:
            return _replay_missing(url)
        index = self.calendar.day_index(step)
        quotes = self._data.search_quotes(text, index, quotes_count) if quotes_count else []
        news = self._data.news_about(text.upper().replace(".", "-"), index, news_count) if news_count else []
        payload = {
            "explains": [],
            "count": len(quotes) + len(news),
            "quotes": quotes,
            "news": news,
            "nav": [],
            "lists": [],
            "replayDay": self.universe.days[index].isoformat(),
        }
        return CannedResponse(200, json_body(payload))

    def _screener(self, query: Mapping[str, list[str]], url: str, step: int | None) -> CannedResponse:
        screener = _first(query, "scrIds") or ""
        count = _count(query, "count", 25)
        if count is None or screener not in _SCREENERS:
            return _replay_missing(url)
        index = self.calendar.day_index(step)
        ranked = self.movers(screener, index)
        items = [item for item in (self.quote_item(symbol, step) for symbol in ranked[:count]) if item is not None]
        title, canonical = _SCREENERS[screener]
        result = {
            "id": f"replay-{screener}",
            "title": f"{title} (replay)",
            "description": f"Replay: computed from the S&P 500 stocks' bars of {self.universe.days[index].isoformat()}",
            "canonicalName": canonical,
            "start": 0,
            "count": len(items),
            "total": len(ranked),
            "quotes": items,
        }
        return CannedResponse(200, json_body({"finance": {"result": [result], "error": None}}))

    def movers(self, screener: str, day_index: int) -> list[str]:
        """The day's stocks ranked for a screener: day_gainers (rising, largest % change first),
        day_losers (falling, largest % fall first), most_actives (highest volume first). Ties by symbol."""
        universe = self.universe
        stocks = universe.stocks_trading_on(day_index)
        if screener == "most_actives":
            volumes = {s: bar.volume for s in stocks if (bar := universe.bar(s, day_index)) is not None}
            return sorted(volumes, key=lambda s: (-volumes[s], s))
        changes: dict[str, float] = {}
        for symbol in stocks:
            bar, previous = universe.bar(symbol, day_index), universe.bar(symbol, day_index - 1)
            if bar is not None and previous is not None:
                changes[symbol] = (bar.close - previous.close) / previous.close * 100
        if screener == "day_gainers":
            return sorted((s for s in changes if changes[s] > 0), key=lambda s: (-changes[s], s))
        return sorted((s for s in changes if changes[s] < 0), key=lambda s: (changes[s], s))

    def close(self) -> None:
        return None


def _path_symbol(path: str) -> str:
    return unquote(path.rsplit("/", 1)[-1]).strip().upper()


class CannedTransport(BaseAdapter):
    """For tests: answers each request with the next canned response (or an exception) for its URL prefix."""

    def __init__(self, routes: Mapping[str, Iterable[CannedResponse | Exception]]) -> None:
        super().__init__()
        self._routes = {prefix: list(answers) for prefix, answers in routes.items()}
        self.requests_seen: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]  # noqa: ARG002
        url = request.url or ""
        self.requests_seen.append(url)
        for prefix, answers in self._routes.items():
            if url.startswith(prefix):
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                if isinstance(answer, Exception):
                    raise answer
                return make_response(request, answer)
        return make_response(request, CannedResponse(404, json_body({"error": f"no canned answer for {url}"})))

    def close(self) -> None:
        return None
