"""requests transport adapters that answer provider HTTP calls from recorded genuine data.

Mounted into the provider's requests.Session (see chalicelib/adapters/http.py), they let the real
adapter code — yfinance included — run offline: only the bytes on the wire come from disk.
See README.md beside this file for what is served and where each file came from.
"""

from __future__ import annotations

import csv
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
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
            )
            for row in reader
            if row and row[0]
        ]
    return sorted(bars, key=lambda bar: bar.day)


def quote_item_from_daily(symbol: str, bars: list[DailyBar], name: str | None) -> dict[str, Any]:
    """A v7-quote-shaped item from the last two real daily bars (no value is altered or made up)."""
    last, previous = bars[-1], bars[-2]
    closed_at = datetime.combine(last.day, time(16, 0), tzinfo=_NEW_YORK)
    change = last.close - previous.close
    item: dict[str, Any] = {
        "symbol": symbol,
        "quoteType": "INDEX" if symbol.startswith("^") else "EQUITY",
        "marketState": "CLOSED",
        "currency": "USD",
        "regularMarketPrice": last.close,
        "regularMarketPreviousClose": previous.close,
        "regularMarketChange": change,
        "regularMarketChangePercent": change / previous.close * 100,
        "regularMarketOpen": last.open,
        "regularMarketDayHigh": last.high,
        "regularMarketDayLow": last.low,
        "regularMarketVolume": last.volume,
        "regularMarketTime": int(closed_at.timestamp()),
    }
    if name:
        item["shortName"] = name
    return item


# Daily series → the symbol Yahoo quotes it under.
_DAILY_SYMBOLS = {"AAPL": "AAPL", "GOOG": "GOOG", "GSPC": "^GSPC", "MSFT": "MSFT", "NVDA": "NVDA", "SPY": "SPY"}


class YahooReplayData:
    """Everything the Yahoo replay knows, loaded once: recorded v7 items, daily series, constituents."""

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
        with CONSTITUENTS_CSV.open(newline="") as handle:
            for row in csv.DictReader(handle):
                # Yahoo spells class shares with a dash (BRK-B); the list uses a dot (BRK.B).
                self.constituents[row["Symbol"].replace(".", "-")] = row["Security"]
        self.daily: dict[str, list[DailyBar]] = {}
        for path in sorted(DAILY_DIR.glob("*_daily_*.csv")):
            symbol = _DAILY_SYMBOLS.get(path.name.split("_daily_")[0])
            if symbol:
                self.daily[symbol] = read_daily_series(path)

    def quote_item(self, symbol: str) -> dict[str, Any] | None:
        if symbol in self.recorded_items:
            return self.recorded_items[symbol]
        if symbol in self.daily:
            return quote_item_from_daily(symbol, self.daily[symbol], self.constituents.get(symbol))
        return None

    def is_known_without_data(self, symbol: str) -> bool:
        return symbol in self.constituents and self.quote_item(symbol) is None


@functools.cache
def yahoo_replay_data() -> YahooReplayData:
    return YahooReplayData()


class YahooReplayTransport(BaseAdapter):
    """Answers yfinance's Yahoo calls from YahooReplayData; everything else is a 404 naming the URL."""

    def __init__(self, data: YahooReplayData | None = None) -> None:
        super().__init__()
        self._data = data or yahoo_replay_data()
        self.requests_seen: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]  # noqa: ARG002
        url = request.url or ""
        self.requests_seen.append(url)
        parts = urlsplit(url)
        host, path = parts.hostname or "", parts.path
        if host == "fc.yahoo.com":
            return make_response(request, CannedResponse(200, b"", "text/html"))
        if host.endswith("finance.yahoo.com") and path == "/v1/test/getcrumb":
            return make_response(request, CannedResponse(200, REPLAY_CRUMB.encode(), "text/plain"))
        if host.endswith("finance.yahoo.com") and path == "/v7/finance/quote":
            return make_response(request, self._quote(parse_qs(parts.query)))
        return make_response(request, CannedResponse(404, json_body({"error": f"no replay recording for {url}"})))

    def _quote(self, query: Mapping[str, list[str]]) -> CannedResponse:
        symbols = [s.strip().upper() for s in ",".join(query.get("symbols", [])).split(",") if s.strip()]
        items = [item for item in (self._data.quote_item(s) for s in symbols) if item is not None]
        missing_known = [s for s in symbols if self._data.is_known_without_data(s)]
        if not items and missing_known:
            error = {"code": "Not Found", "description": f"replay has no recorded data for {','.join(missing_known)}"}
            return CannedResponse(404, json_body({"quoteResponse": {"result": None, "error": error}}))
        return CannedResponse(200, json_body({"quoteResponse": {"result": items, "error": None}}))

    def close(self) -> None:
        return None


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
