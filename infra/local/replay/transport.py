"""requests transport adapters that answer provider HTTP calls from recorded genuine data.

Mounted into the provider's requests.Session (see chalicelib/adapters/http.py), they let the real
adapter code — yfinance included — run offline: only the bytes on the wire come from disk.
See README.md beside this file for what is served and where each file came from.

The replay clock (opt-in: REPLAY_STEP_SECONDS > 0) makes successive quotes move: every symbol with a
real daily series is quoted from bar k of that series at replay step k, where
k = floor((now - REPLAY_EPOCH) / REPLAY_STEP_SECONDS). REPLAY_EPOCH is shared by every Lambda worker
of a stack (run.py sets it once), so all of them are on the same step; without it the transport's
creation time is the origin.
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

DATA_DIR = Path(__file__).resolve().parent / "data"
YAHOO_DIR = DATA_DIR / "yahoo"
DAILY_DIR = DATA_DIR / "daily"
CONSTITUENTS_CSV = DATA_DIR / "sp500_constituents.csv"

# Placeholder for Yahoo's cookie/crumb handshake: plumbing, not market data (recordings redact it).
REPLAY_CRUMB = "replay-crumb"
_NEW_YORK = ZoneInfo("America/New_York")
REPLAY_STEP_ENV = "REPLAY_STEP_SECONDS"
REPLAY_EPOCH_ENV = "REPLAY_EPOCH"
# Static identity fields a recorded v7 item lends to its series' stepped quotes (no market data).
_IDENTITY_FIELDS = (
    "shortName",
    "longName",
    "displayName",
    "quoteType",
    "currency",
    "exchange",
    "fullExchangeName",
    "exchangeTimezoneName",
    "market",
)


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


@dataclass(frozen=True)
class DailyBar:
    day: date
    open: float
    high: float
    low: float
    close: float
    volume: int
    adj_close: float | None = None


def read_daily_series(path: Path) -> list[DailyBar]:
    """Yahoo-download style CSV (Date,Open,High,Low,Close[,Adj Close],Volume); the date column may be unnamed."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        column = {name: index for index, name in enumerate(header)}
        bars = [
            DailyBar(
                day=date.fromisoformat(row[0]),
                open=float(row[column["Open"]]),
                high=float(row[column["High"]]),
                low=float(row[column["Low"]]),
                close=float(row[column["Close"]]),
                volume=int(float(row[column["Volume"]])),
                adj_close=float(row[column["Adj Close"]]) if "Adj Close" in column else None,
            )
            for row in reader
            if row and row[0]
        ]
    return sorted(bars, key=lambda bar: bar.day)


def quote_item_from_daily(symbol: str, bars: list[DailyBar], name: str | None) -> dict[str, Any]:
    """A v7-quote-shaped item from the last two real daily bars (no value is altered or made up)."""
    last, previous = bars[-1], bars[-2]
    closed_at = datetime.combine(last.day, time(16, 0), tzinfo=_NEW_YORK)
    return quote_item_from_bar(symbol, last, previous, market_time=int(closed_at.timestamp()), name=name)


def replay_bar_index(step: int, bar_count: int) -> int:
    """The bar quoted at replay step ``step``: 1, 2, …, last, then 1 again. Bar 0 has no real previous
    close in its series, so it is only ever bar 1's previous close."""
    if bar_count < 2:
        raise ValueError("a replayed series needs at least two bars")
    return 1 + step % (bar_count - 1)


def quote_item_for_step(
    symbol: str, bars: Sequence[DailyBar], step: int, *, market_time: int, name: str | None
) -> dict[str, Any]:
    """A v7-quote-shaped item for replay step ``step``: bar k's close, open, high, low and volume, the
    previous bar's close, the change between them (all real); ``regularMarketTime`` is the step's
    wall-clock time, and ``replayBarDate`` the bar's real date."""
    index = replay_bar_index(step, len(bars))
    item = quote_item_from_bar(symbol, bars[index], bars[index - 1], market_time=market_time, name=name)
    item["replayBarDate"] = bars[index].day.isoformat()
    item["replayStep"] = step
    return item


def quote_item_from_bar(
    symbol: str, bar: DailyBar, previous: DailyBar, *, market_time: int, name: str | None
) -> dict[str, Any]:
    """A v7-quote-shaped item from one real bar and the bar before it (values unchanged)."""
    change = bar.close - previous.close
    item: dict[str, Any] = {
        "symbol": symbol,
        "quoteType": "INDEX" if symbol.startswith("^") else "EQUITY",
        "marketState": "CLOSED",
        "currency": "USD",
        "regularMarketPrice": bar.close,
        "regularMarketPreviousClose": previous.close,
        "regularMarketChange": change,
        "regularMarketChangePercent": change / previous.close * 100,
        "regularMarketOpen": bar.open,
        "regularMarketDayHigh": bar.high,
        "regularMarketDayLow": bar.low,
        "regularMarketVolume": bar.volume,
        "regularMarketTime": market_time,
    }
    if name:
        item["shortName"] = name
    return item


# Daily series → the symbol Yahoo quotes it under.
_DAILY_SYMBOLS = {"AAPL": "AAPL", "GOOG": "GOOG", "GSPC": "^GSPC", "MSFT": "MSFT", "NVDA": "NVDA", "SPY": "SPY"}

# Yahoo's chart ranges (the standard Period values), counted back from a series' last date.
_RANGE_MONTHS = {"1mo": 1, "3mo": 3, "6mo": 6, "1y": 12, "2y": 24, "5y": 60, "10y": 120}
_RANGE_BARS = {"1d": 1, "5d": 5}
_DAILY_OR_LONGER = ("1d", "1wk", "1mo")
# Wikipedia footnote markers left in the constituents list ("Virginia[2]").
_FOOTNOTE = re.compile(r"\[\d+\]")


def _months_before(day: date, months: int) -> date:
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def bars_in_range(bars: Sequence[DailyBar], chart_range: str) -> list[DailyBar] | None:
    """The bars of ``chart_range`` counted back from the series' last date (None: not a Yahoo range).
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


def resample(bars: Sequence[DailyBar], interval: str) -> list[DailyBar]:
    """Daily bars as 1d (unchanged), 1wk (ISO weeks) or 1mo (calendar months): first open, highest high,
    lowest low, last close and adjusted close, summed volume; each dated by its first session."""
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
            high=max(bar.high for bar in group),
            low=min(bar.low for bar in group),
            close=group[-1].close,
            volume=sum(bar.volume for bar in group),
            adj_close=group[-1].adj_close,
        )
        for group in groups.values()
    ]


def chart_from_daily(
    symbol: str, bars: Sequence[DailyBar], *, chart_range: str, interval: str, name: str | None, source: str
) -> dict[str, Any]:
    """A v8-chart-shaped payload from real daily bars (values unchanged; bars stamped at the session's
    09:30 New York open, as Yahoo stamps daily bars). ``meta.replaySource`` names the CSV."""
    stamps = [int(datetime.combine(bar.day, time(9, 30), tzinfo=_NEW_YORK).timestamp()) for bar in bars]
    meta: dict[str, Any] = {
        "currency": "USD",
        "symbol": symbol,
        "exchangeTimezoneName": "America/New_York",
        "dataGranularity": interval,
        "range": chart_range,
        "replaySource": source,
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
    if bars and all(bar.adj_close is not None for bar in bars):
        indicators["adjclose"] = [{"adjclose": [bar.adj_close for bar in bars]}]
    return {"chart": {"result": [{"meta": meta, "timestamp": stamps, "indicators": indicators}], "error": None}}


def _recorded_symbol(meta: Mapping[str, Any]) -> str:
    """The symbol a recording was made for: the last path segment of its request URL."""
    return unquote(urlsplit(meta["request"]["url"]).path.rsplit("/", 1)[-1]).upper()


def _recorded_query(meta: Mapping[str, Any]) -> dict[str, list[str]]:
    return parse_qs(urlsplit(meta["request"]["url"]).query)


@dataclass(frozen=True)
class ChartRecording:
    name: str
    granularity: str
    bar_count: int


@dataclass(frozen=True)
class Constituent:
    symbol: str
    name: str
    sector: str
    sub_industry: str
    headquarters: str | None


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


class YahooReplayData:
    """Everything the Yahoo replay knows, loaded once: recorded responses, daily series, constituents."""

    def __init__(self) -> None:
        self.recorded_items: dict[str, dict[str, Any]] = {}
        for path in sorted(YAHOO_DIR.glob("quote_*.json")):
            if path.name.endswith(".meta.json"):
                continue
            payload = json.loads(path.read_text())
            for item in payload["quoteResponse"]["result"] or []:
                # A single-symbol recording wins over the same symbol inside a batch recording.
                if item["symbol"] not in self.recorded_items or "batch" not in path.name:
                    self.recorded_items[item["symbol"]] = item
        self.constituents: dict[str, str] = {}
        self.constituent_rows: dict[str, Constituent] = {}
        with CONSTITUENTS_CSV.open(newline="") as handle:
            for row in csv.DictReader(handle):
                # Yahoo spells class shares with a dash (BRK-B); the list uses a dot (BRK.B).
                symbol = row["Symbol"].replace(".", "-")
                self.constituents[symbol] = row["Security"]
                location = _FOOTNOTE.sub("", row.get("Headquarters Location") or "").strip()
                self.constituent_rows[symbol] = Constituent(
                    symbol=symbol,
                    name=row["Security"],
                    sector=row["GICS Sector"],
                    sub_industry=row["GICS Sub-Industry"],
                    headquarters=location if location and location.lower() != "none" else None,
                )
        self.daily: dict[str, list[DailyBar]] = {}
        self.daily_files: dict[str, str] = {}
        for path in sorted(DAILY_DIR.glob("*_daily_*.csv")):
            symbol = _DAILY_SYMBOLS.get(path.name.split("_daily_")[0])
            if symbol:
                self.daily[symbol] = read_daily_series(path)
                self.daily_files[symbol] = f"daily/{path.name}"
        self._load_recordings()

    def _load_recordings(self) -> None:
        self.charts: dict[str, list[ChartRecording]] = {}
        self.chart_errors: dict[str, str] = {}
        self.summary_modules: dict[str, dict[str, Any]] = {}
        self.summary_errors: dict[str, str] = {}
        self.searches: dict[str, str] = {}
        self.screeners: dict[str, str] = {}
        for meta_path in sorted(YAHOO_DIR.glob("*.meta.json")):
            meta = json.loads(meta_path.read_text())
            name = meta_path.name.removesuffix(".meta.json")
            ok = int(meta["status"]) == 200
            if name.startswith("chart_"):
                symbol = _recorded_symbol(meta)
                if not ok:
                    self.chart_errors[symbol] = name
                    continue
                result = json.loads((YAHOO_DIR / meta["body_file"]).read_text())["chart"]["result"][0]
                self.charts.setdefault(symbol, []).append(
                    ChartRecording(name, result["meta"]["dataGranularity"], len(result.get("timestamp") or []))
                )
            elif name.startswith("quoteSummary_"):
                symbol = _recorded_symbol(meta)
                if not ok:
                    self.summary_errors[symbol] = name
                    continue
                result = json.loads((YAHOO_DIR / meta["body_file"]).read_text())["quoteSummary"]["result"][0]
                self.summary_modules.setdefault(symbol, {}).update(result)
            elif name.startswith("search_") and ok:
                self.searches[_recorded_query(meta)["q"][0].upper()] = name
            elif name.startswith("screener_") and ok:
                self.screeners[_recorded_query(meta)["scrIds"][0]] = name
        # Every recorded news item once, for symbols whose own search was not recorded.
        self.news: list[dict[str, Any]] = []
        seen: set[str] = set()
        for name in self.searches.values():
            for item in json.loads((YAHOO_DIR / f"{name}.json").read_text()).get("news", []):
                if item.get("uuid") not in seen:
                    seen.add(item.get("uuid"))
                    self.news.append(item)

    def quote_item(self, symbol: str) -> dict[str, Any] | None:
        if symbol in self.recorded_items:
            return self.recorded_items[symbol]
        if symbol in self.daily:
            return quote_item_from_daily(symbol, self.daily[symbol], self.constituents.get(symbol))
        return None

    def stepped_quote_item(self, symbol: str, step: int, *, market_time: int) -> dict[str, Any] | None:
        """The replay clock's quote for a symbol with a daily series (None without one)."""
        bars = self.daily.get(symbol)
        if not bars or len(bars) < 2:
            return None
        recorded_item = self.recorded_items.get(symbol) or {}
        item = quote_item_for_step(symbol, bars, step, market_time=market_time, name=self.constituents.get(symbol))
        item.update({key: recorded_item[key] for key in _IDENTITY_FIELDS if key in recorded_item})
        return item

    def is_known_without_data(self, symbol: str) -> bool:
        return symbol in self.constituents and self.quote_item(symbol) is None

    def is_known(self, symbol: str) -> bool:
        """A real instrument the replay has some data for, or an S&P 500 constituent."""
        return (
            symbol in self.constituents
            or symbol in self.recorded_items
            or symbol in self.daily
            or symbol in self.charts
            or symbol in self.summary_modules
        )

    def search_quotes(self, query: str, limit: int) -> list[dict[str, Any]]:
        """Constituents matching ``query``: exact symbol, then symbol prefix, then name substring
        (case-insensitive), as search quote items carrying only what the constituents list says."""
        needle = query.strip().upper()
        symbol_needle = needle.replace(".", "-")
        ranked: list[tuple[int, str, Constituent]] = []
        for symbol, row in self.constituent_rows.items():
            if symbol == symbol_needle:
                rank = 0
            elif symbol.startswith(symbol_needle):
                rank = 1
            elif needle in row.name.upper():
                rank = 2
            else:
                continue
            ranked.append((rank, symbol, row))
        ranked.sort(key=lambda entry: (entry[0], entry[1]))
        return [
            {
                "symbol": row.symbol,
                "shortname": row.name,
                "longname": row.name,
                "quoteType": "EQUITY",
                "typeDisp": "Equity",
                "sector": row.sector,
                "industry": row.sub_industry,
                "isYahooFinance": True,
            }
            for _, _, row in ranked[:limit]
        ]

    def news_about(self, symbol: str, limit: int) -> list[dict[str, Any]]:
        return [item for item in self.news if symbol in (item.get("relatedTickers") or [])][:limit]


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


def _replay_missing(url: str, what: str | None = None) -> CannedResponse:
    """The replay's own answer for something it holds no recording of (the adapter: provider unavailable)."""
    message = f"replay has no recorded data for {what}" if what else f"no replay recording for {url}"
    return CannedResponse(404, json_body({"error": message}))


def _chart_no_data(description: str) -> CannedResponse:
    """Yahoo's chart 400 shape (as in chart_BEKE_400_no_data_for_range), with the replay's own reason."""
    return CannedResponse(
        400, json_body({"chart": {"result": None, "error": {"code": "Bad Request", "description": description}}})
    )


class YahooReplayTransport(BaseAdapter):
    """Answers yfinance's Yahoo calls from YahooReplayData; everything else is a 404 naming the URL.

    ``clock``: a ReplayClock stepping quotes through the daily series, None for the frozen replay, or
    "env" (the default): REPLAY_STEP_SECONDS / REPLAY_EPOCH, read now (see replay_clock_from_env)."""

    def __init__(
        self, data: YahooReplayData | None = None, *, clock: ReplayClock | Literal["env"] | None = "env"
    ) -> None:
        super().__init__()
        self._data = data or yahoo_replay_data()
        self.clock = replay_clock_from_env(os.environ, created_at=_wall_clock()) if clock == "env" else clock
        self.requests_seen: list[str] = []

    def quote_item(self, symbol: str, step: int | None = None) -> dict[str, Any] | None:
        """The v7 quote item for ``symbol``: with the clock on, a series symbol's bar for the current
        step (or ``step``, so that one batch answer is all of one step)."""
        if self.clock is not None and symbol in self._data.daily:
            step = self.clock.step() if step is None else step
            stepped = self._data.stepped_quote_item(symbol, step, market_time=self.clock.step_started_at(step))
            if stepped is not None:
                return stepped
        return self._data.quote_item(symbol)

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
        if path == "/v7/finance/quote":
            return make_response(request, self._quote(query))
        if path.startswith("/v8/finance/chart/"):
            return make_response(request, self._chart(_path_symbol(path), query, url))
        if path.startswith("/v10/finance/quoteSummary/"):
            return make_response(request, self._quote_summary(_path_symbol(path), query, url))
        if path == "/v1/finance/search":
            return make_response(request, self._search(query, url))
        if path == "/v1/finance/screener/predefined/saved":
            return make_response(request, self._screener(query, url))
        return make_response(request, _replay_missing(url))

    def _quote(self, query: Mapping[str, list[str]]) -> CannedResponse:
        symbols = [s.strip().upper() for s in ",".join(query.get("symbols", [])).split(",") if s.strip()]
        step = None if self.clock is None else self.clock.step()
        items = [item for item in (self.quote_item(s, step) for s in symbols) if item is not None]
        missing_known = [s for s in symbols if self._data.is_known_without_data(s)]
        if not items and missing_known:
            error = {"code": "Not Found", "description": f"replay has no recorded data for {','.join(missing_known)}"}
            return CannedResponse(404, json_body({"quoteResponse": {"result": None, "error": error}}))
        return CannedResponse(200, json_body({"quoteResponse": {"result": items, "error": None}}))

    def _chart(self, symbol: str, query: Mapping[str, list[str]], url: str) -> CannedResponse:
        interval = _first(query, "interval") or "1d"
        chart_range = _first(query, "range") or "1mo"
        if symbol in self._data.chart_errors:
            return recorded(self._data.chart_errors[symbol])
        matching = [r for r in self._data.charts.get(symbol, []) if r.granularity == interval]
        if matching:
            return recorded(max(matching, key=lambda r: r.bar_count).name)
        if symbol in self._data.daily and interval in _DAILY_OR_LONGER:
            bars = bars_in_range(self._data.daily[symbol], chart_range)
            if bars is None:
                return _replay_missing(url)
            payload = chart_from_daily(
                symbol,
                resample(bars, interval),
                chart_range=chart_range,
                interval=interval,
                name=self._data.constituents.get(symbol),
                source=self._data.daily_files[symbol],
            )
            return CannedResponse(200, json_body(payload))
        if self._data.is_known(symbol):
            return _chart_no_data(f"replay has no recorded {interval} bars for {symbol}")
        return recorded("chart_SI_404_delisted")

    def _quote_summary(self, symbol: str, query: Mapping[str, list[str]], url: str) -> CannedResponse:
        modules = [m.strip() for m in ",".join(query.get("modules", [])).split(",") if m.strip()]
        if not modules:
            return _replay_missing(url)
        if symbol in self._data.summary_errors:
            return recorded(self._data.summary_errors[symbol])
        found: dict[str, Any] = {}
        if symbol in self._data.summary_modules:
            recorded_modules = self._data.summary_modules[symbol]
            found = {m: recorded_modules[m] for m in modules if m in recorded_modules}
        elif symbol in self._data.constituent_rows:
            row = self._data.constituent_rows[symbol]
            for module in modules:
                if module in ("assetProfile", "summaryProfile"):
                    profile: dict[str, Any] = {"sector": row.sector, "industry": row.sub_industry}
                    if row.headquarters:
                        profile["headquartersLocation"] = row.headquarters
                    found[module] = profile
                elif module == "price":
                    found[module] = {"symbol": symbol, "longName": row.name}
        elif not self._data.is_known(symbol):
            return recorded("quoteSummary_assetProfile_GC_F_404")
        if not found:
            return _replay_missing(url, f"{symbol} (modules {','.join(modules)})")
        return CannedResponse(200, json_body({"quoteSummary": {"result": [found], "error": None}}))

    def _search(self, query: Mapping[str, list[str]], url: str) -> CannedResponse:
        text = (_first(query, "q") or "").strip()
        if not text:
            return recorded("search_missing_q_400")
        quotes_count, news_count = _count(query, "quotesCount", 6), _count(query, "newsCount", 4)
        if quotes_count is None or news_count is None:
            return _replay_missing(url)
        key = text.upper()
        if key in self._data.searches:
            payload = json.loads((YAHOO_DIR / f"{self._data.searches[key]}.json").read_text())
            payload["quotes"] = payload.get("quotes", [])[:quotes_count]
            payload["news"] = payload.get("news", [])[:news_count]
        else:
            payload = {
                "explains": [],
                "quotes": self._data.search_quotes(text, quotes_count),
                "news": copy.deepcopy(self._data.news_about(key.replace(".", "-"), news_count)),
                "nav": [],
                "lists": [],
            }
        payload["count"] = len(payload["quotes"]) + len(payload["news"])
        return CannedResponse(200, json_body(payload))

    def _screener(self, query: Mapping[str, list[str]], url: str) -> CannedResponse:
        screener = _first(query, "scrIds") or ""
        count = _count(query, "count", 25)
        if count is None:
            return _replay_missing(url)
        if screener in self._data.screeners:
            payload = json.loads((YAHOO_DIR / f"{self._data.screeners[screener]}.json").read_text())
            result = payload["finance"]["result"][0]
            result["quotes"] = result["quotes"][:count]
            result["count"] = len(result["quotes"])
            return CannedResponse(200, json_body(payload))
        if screener == "most_actives":
            return CannedResponse(200, json_body(self._most_actives(count)))
        return _replay_missing(url)

    def _most_actives(self, count: int) -> dict[str, Any]:
        """No most_actives recording exists: the recorded day gainers and day losers together, most
        traded (regularMarketVolume) first. Labelled as such in the screener's title and description."""
        quotes: dict[str, dict[str, Any]] = {}
        for screener in ("day_gainers", "day_losers"):
            payload = json.loads((YAHOO_DIR / f"{self._data.screeners[screener]}.json").read_text())
            for item in payload["finance"]["result"][0]["quotes"]:
                quotes.setdefault(item["symbol"], item)
        ranked = sorted(quotes.values(), key=lambda item: item.get("regularMarketVolume") or 0, reverse=True)
        return {
            "finance": {
                "result": [
                    {
                        "id": "replay-most_actives",
                        "title": "Most Actives (replay)",
                        "description": "Replay: the recorded day_gainers and day_losers quotes, most traded first; "
                        "no most_actives recording exists.",
                        "canonicalName": "MOST_ACTIVES",
                        "start": 0,
                        "count": min(count, len(ranked)),
                        "total": len(ranked),
                        "quotes": ranked[:count],
                    }
                ],
                "error": None,
            }
        }

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
