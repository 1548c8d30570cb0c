"""FmpProvider against genuine recorded FMP responses (tests/fixtures/providers/fmp/, see its README), answered
at the HTTP layer of the requests session the adapter really uses, plus tests over a real local HTTP server.
Failures are injected at the HTTP layer too, never by patching the adapter.

Bodies that are not recordings are marked NOT A RECORDING where they are defined; recordings changed in one
field to reach a branch are marked EDITED RECORDING."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.base import ProviderRequest
from chalicelib.adapters.providers.fmp import FMP_BASE_URL, PLAN_REFUSAL_MEMORY, FmpProvider
from chalicelib.adapters.providers.fmp.historical import build_historical_request
from chalicelib.adapters.providers.fmp.profile import build_profile_request
from chalicelib.adapters.providers.fmp.quote import QUOTE_BATCH_SIZE, build_quote_request
from chalicelib.adapters.providers.fmp.search import build_search_request
from chalicelib.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderNoData,
    ProviderParseError,
    ProviderRateLimited,
    ProviderSymbolNotFound,
    ProviderTimeout,
    ProviderUnavailable,
    ProviderUnsupported,
)
from chalicelib.models.market import DataKind, Interval, MoverType, Period
from chalicelib.ports import MarketDataProvider
from infra.local.replay.transport import CannedResponse, CannedTransport, json_body, recorded

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers" / "fmp"
API_KEY = "fmp-test-key-0123456789abcdef"

QUOTE_STABLE = "quote_stable_AAPL"
QUOTE_V3 = "quote_v3_AAPL"
EOD_STABLE = "historical-price-eod-full_stable_AAPL_2023-01-01_2023-01-10"
EOD_V3 = "historical-price-full_v3_AAPL_2023-01-01_2023-01-10"
PROFILE_V3 = "profile_v3_AAPL"
GAINERS = "biggest-gainers_stable"
LOSERS = "biggest-losers_stable"
ACTIVES = "most-actives_stable"

# NOT A RECORDING: FMP's answer for unknown symbols, as the shared fixtures README describes it (client code,
# issue threads): HTTP 200 with an empty array.
UNKNOWN_SYMBOL = CannedResponse(200, b"[]")
# NOT A RECORDING: v3 historical-price-full's empty object for an unknown symbol (client code).
UNKNOWN_SYMBOL_V3_HISTORY = CannedResponse(200, b"{}")
# NOT A RECORDING: the bad-key answer in FMP's documented wording (fixtures README), HTTP 401.
INVALID_KEY_MESSAGE = (
    "Invalid API KEY. Feel free to create a Free API Key or visit "
    "https://site.financialmodelingprep.com/faqs?search=why-is-my-api-key-invalid for more information."
)
INVALID_KEY_401 = CannedResponse(401, json_body({"Error Message": INVALID_KEY_MESSAGE}))
# NOT A RECORDING: the quota answer in FMP's documented wording (fixtures README), sent with 429 or with 200.
LIMIT_MESSAGE = (
    "Limit Reach . Please upgrade your plan or visit our documentation for more details at "
    "https://site.financialmodelingprep.com/"
)
LIMIT_429 = CannedResponse(429, json_body({"Error Message": LIMIT_MESSAGE}), headers={"Retry-After": "60"})
LIMIT_200 = CannedResponse(200, json_body({"Error Message": LIMIT_MESSAGE}))
# NOT A RECORDING: paid-only endpoint, "Exclusive Endpoint : ..." (fixtures README), sometimes HTTP 402.
EXCLUSIVE_MESSAGE = (
    "Exclusive Endpoint : This endpoint is not available under your current subscription please visit "
    "our subscription page to upgrade your plan at https://site.financialmodelingprep.com/developer/docs/pricing"
)
EXCLUSIVE_402 = CannedResponse(402, json_body({"Error Message": EXCLUSIVE_MESSAGE}))
EXCLUSIVE_200 = CannedResponse(200, json_body({"Error Message": EXCLUSIVE_MESSAGE}))
# NOT A RECORDING: HTTP 403 for a v3 path on a post-2025 key, wording quoted in AI4Finance-Foundation/FinRobot#73.
LEGACY_403 = CannedResponse(
    403,
    json_body(
        {
            "Error Message": "Legacy Endpoint : Due to Legacy endpoints being no longer supported - This endpoint "
            "is only available for legacy users who have valid subscriptions prior August 31, 2025."
        }
    ),
)
# NOT A RECORDING: a 403 without plan wording (invented), read as a refused key.
FORBIDDEN_403 = CannedResponse(403, json_body({"Error Message": "Forbidden"}))
# NOT A RECORDING: search body written from FMP's documented fields [{symbol, name, currency, exchangeFullName,
# exchange}]; the values are well-known listings, not a captured answer.
SEARCH_BODY: list[dict[str, Any]] = [
    {
        "symbol": "AAPL",
        "name": "Apple Inc.",
        "currency": "USD",
        "exchangeFullName": "NASDAQ Global Select",
        "exchange": "NASDAQ",
    },
    {
        "symbol": "APLE",
        "name": "Apple Hospitality REIT, Inc.",
        "currency": "USD",
        "exchangeFullName": "New York Stock Exchange",
        "exchange": "NYSE",
    },
    {"symbol": "AAPL.NE", "name": "Apple Inc.", "currency": "CAD", "exchangeFullName": "NEO Exchange", "exchange": ""},
]


def raw(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def rec(name: str) -> CannedResponse:
    return recorded(name, directory=FIXTURES)


def body(payload: object, status: int = 200) -> CannedResponse:
    return CannedResponse(status, json_body(payload))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


DEFAULT_NOW = at("2023-01-10T23:00:00+00:00")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def fmp(*answers: CannedResponse | Exception, now: datetime = DEFAULT_NOW) -> tuple[FmpProvider, CannedTransport]:
    transport = CannedTransport({FMP_BASE_URL: list(answers)})
    session = build_session(timeout_cap_seconds=5, transport=transport)
    return FmpProvider(session, api_key=API_KEY, clock=Clock(now)), transport


def sent(transport: CannedTransport, index: int = 0) -> tuple[str, dict[str, list[str]]]:
    """Path and query of one request the adapter made."""
    parts = urlsplit(transport.requests_seen[index])
    return parts.path, parse_qs(parts.query)


def assert_keyed(query: dict[str, list[str]]) -> dict[str, list[str]]:
    """The key went as FMP's `apikey` query parameter; returns the other parameters."""
    assert query.pop("apikey") == [API_KEY]
    return query


# --- capabilities -------------------------------------------------------------------------------------


def test_declares_what_fmp_serves_and_satisfies_the_port() -> None:
    provider, _ = fmp()
    port: MarketDataProvider = provider
    assert port.vendor == port.name == "fmp"
    assert port.capabilities == {
        DataKind.QUOTE,
        DataKind.INDICES,
        DataKind.SECTORS,
        DataKind.HISTORICAL,
        DataKind.PROFILE,
        DataKind.SEARCH,
        DataKind.MOVERS,
    }
    assert port.max_symbols_per_quote_call == QUOTE_BATCH_SIZE == 100
    with pytest.raises(ProviderUnsupported):
        port.get_news("AAPL", 5, timeout_seconds=1)
    assert FmpProvider(requests.Session(), api_key=API_KEY, source_label="replay").name == "replay"


# --- quotes -------------------------------------------------------------------------------------------


def test_single_quote_maps_the_stable_recording() -> None:
    item = raw(QUOTE_STABLE)[0]
    provider, transport = fmp(rec(QUOTE_STABLE))

    quote = provider.get_quotes(["AAPL"], timeout_seconds=2)["AAPL"]

    assert quote.price == item["price"]
    assert quote.change == item["change"]
    assert quote.change_percent == item["changePercentage"]
    assert quote.volume == item["volume"]
    assert quote.previous_close == item["previousClose"]
    assert quote.open == item["open"]
    assert (quote.day_high, quote.day_low) == (item["dayHigh"], item["dayLow"])
    assert (quote.fifty_two_week_high, quote.fifty_two_week_low) == (item["yearHigh"], item["yearLow"])
    assert quote.market_cap == item["marketCap"]
    assert quote.name == item["name"]
    assert quote.exchange == item["exchange"]
    assert quote.as_of == datetime.fromtimestamp(item["timestamp"], tz=UTC) == at("2025-09-23T17:23:02+00:00")
    assert len(transport.requests_seen) == 1
    path, query = sent(transport)
    assert path == "/stable/quote"
    assert assert_keyed(query) == {"symbol": ["AAPL"]}


def test_quote_reads_the_v3_field_names() -> None:
    item = raw(QUOTE_V3)[0]
    provider, _ = fmp(rec(QUOTE_V3))
    quote = provider.get_quotes(["AAPL"], timeout_seconds=2)["AAPL"]
    assert quote.change_percent == item["changesPercentage"]
    assert quote.price == item["price"]
    assert quote.market_cap == item["marketCap"]
    assert quote.as_of == datetime.fromtimestamp(item["timestamp"], tz=UTC)


def test_several_symbols_go_in_one_batch_quote_and_unknown_ones_are_absent() -> None:
    # The genuine single-quote body answers a batch request here: FMP documents the same quote object for both
    # endpoints; no batch-quote recording exists (see the fixtures README).
    provider, transport = fmp(rec(QUOTE_STABLE))

    quotes = provider.get_quotes(["AAPL", "NOPE", "^GSPC"], timeout_seconds=2)

    assert list(quotes) == ["AAPL"]
    assert len(transport.requests_seen) == 1
    path, query = sent(transport)
    assert path == "/stable/batch-quote"
    assert assert_keyed(query) == {"symbols": ["AAPL,NOPE,^GSPC"]}


def test_unknown_symbols_answered_with_an_empty_array_are_absent() -> None:
    provider, _ = fmp(UNKNOWN_SYMBOL)
    assert provider.get_quotes(["NOPE"], timeout_seconds=2) == {}


def test_no_symbols_no_request_and_the_batch_size_is_enforced() -> None:
    provider, transport = fmp(rec(QUOTE_STABLE))
    assert provider.get_quotes([], timeout_seconds=2) == {}
    with pytest.raises(ValueError, match="at most 100"):
        provider.get_quotes([f"S{i}" for i in range(101)], timeout_seconds=2)
    assert transport.requests_seen == []


def test_quote_numbers_sent_as_strings_are_converted() -> None:
    item = copy.deepcopy(raw(QUOTE_STABLE)[0])
    # EDITED RECORDING: numbers as strings, a percent string, null-ish strings.
    item.update(price="254.86", changePercentage="-0.47641%", volume="32409702", open="None", dayHigh="-")
    provider, _ = fmp(body([item]))
    quote = provider.get_quotes(["AAPL"], timeout_seconds=2)["AAPL"]
    assert quote.price == 254.86
    assert quote.change_percent == -0.47641
    assert quote.volume == 32409702
    assert quote.open is None
    assert quote.day_high is None


def test_quote_items_without_a_price_or_time_are_left_out() -> None:
    stable, v3 = raw(QUOTE_STABLE)[0], raw(QUOTE_V3)[0]
    no_time = dict(stable, timestamp=None)  # EDITED RECORDING
    no_price = dict(v3, symbol="MSFT", price=None)  # EDITED RECORDING
    provider, _ = fmp(body([no_time, no_price]))
    assert provider.get_quotes(["AAPL", "MSFT"], timeout_seconds=2) == {}


# --- historical -----------------------------------------------------------------------------------------


def test_daily_history_maps_every_stable_bar_oldest_first() -> None:
    bars = list(reversed(raw(EOD_STABLE)))  # FMP sends newest first
    provider, transport = fmp(rec(EOD_STABLE))

    history = provider.get_historical("AAPL", Period.MO1, Interval.D1, timeout_seconds=2)

    assert (history.symbol, history.period, history.interval) == ("AAPL", Period.MO1, Interval.D1)
    assert [b.close for b in history.bars] == [b["close"] for b in bars]
    assert [b.open for b in history.bars] == [b["open"] for b in bars]
    assert [b.high for b in history.bars] == [b["high"] for b in bars]
    assert [b.low for b in history.bars] == [b["low"] for b in bars]
    assert [b.volume for b in history.bars] == [b["volume"] for b in bars]
    assert all(b.adj_close is None for b in history.bars)  # stable eod/full has no adjClose
    # Daily bars are stamped at their session's open: 09:30 New York (EST) = 14:30 UTC.
    assert [b.timestamp for b in history.bars] == [at(f"{b['date']}T14:30:00+00:00") for b in bars]
    assert history.as_of == history.bars[-1].timestamp == at("2023-01-10T14:30:00+00:00")
    assert len(transport.requests_seen) == 1
    path, query = sent(transport)
    assert path == "/stable/historical-price-eod/full"
    assert assert_keyed(query) == {"symbol": ["AAPL"], "from": ["2022-12-10"], "to": ["2023-01-10"]}


def test_daily_history_reads_the_v3_object_shape_with_adjusted_closes() -> None:
    bars = list(reversed(raw(EOD_V3)["historical"]))
    provider, _ = fmp(rec(EOD_V3))
    history = provider.get_historical("AAPL", Period.MO1, Interval.D1, timeout_seconds=2)
    assert [b.close for b in history.bars] == [b["close"] for b in bars]
    assert [b.adj_close for b in history.bars] == [b["adjClose"] for b in bars]
    assert [b.volume for b in history.bars] == [b["volume"] for b in bars]


def test_weekly_bars_are_aggregated_from_the_daily_bars() -> None:
    bars = list(reversed(raw(EOD_STABLE)))
    first_week, second_week = bars[:4], bars[4:]  # 2023-01-03..06 and 2023-01-09..10
    provider, transport = fmp(rec(EOD_STABLE))

    history = provider.get_historical("AAPL", Period.MO1, Interval.WK1, timeout_seconds=2)

    assert len(history.bars) == 2
    for bar, week in zip(history.bars, (first_week, second_week), strict=True):
        assert bar.open == week[0]["open"]
        assert bar.high == max(d["high"] for d in week)
        assert bar.low == min(d["low"] for d in week)
        assert bar.close == week[-1]["close"]
        assert bar.volume == sum(d["volume"] for d in week)
    # Stamped at each week's Monday open (2023-01-02 was a holiday; the stamp is the calendar week's start).
    assert [b.timestamp for b in history.bars] == [at("2023-01-02T14:30:00+00:00"), at("2023-01-09T14:30:00+00:00")]
    _, query = sent(transport)
    assert query["from"] == ["2022-12-05"]  # the Monday of the period's first week: no cut-short first bar


def test_monthly_bars_are_aggregated_and_stamped_at_the_months_first_weekday() -> None:
    bars = list(reversed(raw(EOD_STABLE)))
    provider, transport = fmp(rec(EOD_STABLE))
    history = provider.get_historical("AAPL", Period.MO3, Interval.MO1, timeout_seconds=2)
    [bar] = history.bars
    assert (bar.open, bar.close) == (bars[0]["open"], bars[-1]["close"])
    assert bar.volume == sum(d["volume"] for d in bars)
    assert bar.timestamp == at("2023-01-02T14:30:00+00:00")  # 2023-01-01 was a Sunday
    _, query = sent(transport)
    assert query["from"] == ["2022-10-01"]


@pytest.mark.parametrize(("period", "sessions"), [(Period.D1, 1), (Period.D5, 5)])
def test_session_periods_keep_the_last_sessions(period: Period, sessions: int) -> None:
    bars = list(reversed(raw(EOD_STABLE)))
    provider, transport = fmp(rec(EOD_STABLE))
    history = provider.get_historical("AAPL", period, Interval.D1, timeout_seconds=2)
    assert [b.close for b in history.bars] == [b["close"] for b in bars[-sessions:]]
    _, query = sent(transport)
    assert query["from"] == ["2022-12-31"]  # a window sure to hold the last sessions


def test_period_start_dates() -> None:
    today = date(2024, 3, 31)
    assert build_historical_request("AAPL", Period.Y1, Interval.D1, today=today).params["from"] == "2023-03-31"
    assert build_historical_request("AAPL", Period.MO1, Interval.D1, today=today).params["from"] == "2024-02-29"
    assert build_historical_request("AAPL", Period.YTD, Interval.D1, today=today).params["from"] == "2024-01-01"
    assert build_historical_request("AAPL", Period.MAX, Interval.WK1, today=today).params["from"] == "1900-01-01"
    assert "apikey" not in build_historical_request("AAPL", Period.Y1, Interval.D1, today=today).params


@pytest.mark.parametrize("interval", [Interval.M1, Interval.M5, Interval.M15, Interval.M30, Interval.H1])
def test_intraday_intervals_are_unsupported_without_a_request(interval: Interval) -> None:
    provider, transport = fmp(rec(EOD_STABLE))
    with pytest.raises(ProviderUnsupported) as caught:
        provider.get_historical("AAPL", Period.D5, interval, timeout_seconds=2)
    assert caught.value.provider == "fmp"
    assert not caught.value.counts_as_failure
    assert transport.requests_seen == []


@pytest.mark.parametrize("answer", [UNKNOWN_SYMBOL, UNKNOWN_SYMBOL_V3_HISTORY])
def test_history_for_an_unknown_symbol_is_symbol_not_found(answer: CannedResponse) -> None:
    provider, _ = fmp(answer)
    with pytest.raises(ProviderSymbolNotFound, match="NOPE is unknown"):
        provider.get_historical("NOPE", Period.MO1, Interval.D1, timeout_seconds=2)


def test_bars_without_a_close_are_dropped_and_none_left_is_no_data() -> None:
    payload = copy.deepcopy(raw(EOD_STABLE))
    payload[0]["close"] = None  # EDITED RECORDING: the newest bar without a close
    provider, _ = fmp(body(payload))
    history = provider.get_historical("AAPL", Period.MO1, Interval.D1, timeout_seconds=2)
    assert len(history.bars) == len(payload) - 1
    assert history.as_of == at("2023-01-09T14:30:00+00:00")

    for bar in payload:
        bar["close"] = None  # EDITED RECORDING: no close at all
    provider, _ = fmp(body(payload))
    with pytest.raises(ProviderNoData):
        provider.get_historical("AAPL", Period.MO1, Interval.D1, timeout_seconds=2)


def test_v3_history_object_without_bars_is_no_data() -> None:
    provider, _ = fmp(body({"symbol": "AAPL", "historical": []}))  # EDITED RECORDING: bars removed
    with pytest.raises(ProviderNoData):
        provider.get_historical("AAPL", Period.MO1, Interval.D1, timeout_seconds=2)


# --- profile ------------------------------------------------------------------------------------------------


def test_profile_maps_the_v3_recording() -> None:
    item = raw(PROFILE_V3)[0]
    now = at("2024-01-30T03:22:46+00:00")
    provider, transport = fmp(rec(PROFILE_V3), now=now)

    profile = provider.get_profile("AAPL", timeout_seconds=2)

    assert profile.symbol == "AAPL"
    assert profile.name == item["companyName"]
    assert profile.exchange == item["exchangeShortName"] == "NASDAQ"
    assert profile.currency == item["currency"]
    assert (profile.sector, profile.industry) == (item["sector"], item["industry"])
    assert profile.country == item["country"]
    assert profile.website == item["website"]
    assert profile.description == item["description"]
    assert profile.employees == int(item["fullTimeEmployees"]) == 161000  # a string in the recording
    assert profile.market_cap == item["mktCap"]
    assert profile.as_of == now  # FMP profiles carry no time: when the answer arrived
    path, query = sent(transport)
    assert path == "/stable/profile"
    assert assert_keyed(query) == {"symbol": ["AAPL"]}


def test_profile_reads_the_stable_field_names() -> None:
    item = copy.deepcopy(raw(PROFILE_V3)[0])
    # EDITED RECORDING: the stable spellings (marketCap, exchange as the code, exchangeFullName), an empty website.
    item["marketCap"] = item.pop("mktCap")
    item["exchangeFullName"] = item.pop("exchange")
    item["exchange"] = item.pop("exchangeShortName")
    item.update(website="", fullTimeEmployees="164,000")
    provider, _ = fmp(body([item]))
    profile = provider.get_profile("AAPL", timeout_seconds=2)
    assert profile.market_cap == item["marketCap"]
    assert profile.exchange == "NASDAQ"
    assert profile.website is None
    assert profile.employees == 164000


def test_profile_for_an_unknown_symbol_is_symbol_not_found() -> None:
    provider, _ = fmp(UNKNOWN_SYMBOL)
    with pytest.raises(ProviderSymbolNotFound):
        provider.get_profile("NOPE", timeout_seconds=2)


# --- movers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mover_type", "name", "path"),
    [
        (MoverType.GAINERS, GAINERS, "/stable/biggest-gainers"),
        (MoverType.LOSERS, LOSERS, "/stable/biggest-losers"),
        (MoverType.ACTIVES, ACTIVES, "/stable/most-actives"),
    ],
)
def test_movers_map_the_recordings_in_fmps_order(mover_type: MoverType, name: str, path: str) -> None:
    items = raw(name)
    now = at("2025-09-23T17:23:24+00:00")
    provider, transport = fmp(rec(name), now=now)

    movers = provider.get_movers(mover_type, 10, timeout_seconds=2)

    assert [m.symbol for m in movers] == [i["symbol"] for i in items[:10]]
    assert [m.price for m in movers] == [i["price"] for i in items[:10]]
    assert [m.change for m in movers] == [i["change"] for i in items[:10]]
    assert [m.change_percent for m in movers] == [i["changesPercentage"] for i in items[:10]]
    assert [m.name for m in movers] == [i["name"] for i in items[:10]]
    assert [m.exchange for m in movers] == [i["exchange"] for i in items[:10]]
    assert all(m.as_of == now for m in movers)  # no time in the lists: when the answer arrived
    sent_path, query = sent(transport)
    assert sent_path == path
    assert assert_keyed(query) == {}


def test_movers_limit_and_an_item_timestamp_wins() -> None:
    items = copy.deepcopy(raw(GAINERS))
    items[0]["timestamp"] = 1758648204  # EDITED RECORDING: a mover with its own time
    provider, _ = fmp(body(items))
    movers = provider.get_movers(MoverType.GAINERS, 60, timeout_seconds=2)
    assert len(movers) == len(items) == 50
    assert movers[0].as_of == datetime.fromtimestamp(1758648204, tz=UTC)
    assert movers[1].as_of == DEFAULT_NOW


# --- search ---------------------------------------------------------------------------------------------


def test_search_maps_the_documented_fields() -> None:
    provider, transport = fmp(body(SEARCH_BODY))  # NOT A RECORDING (see SEARCH_BODY)

    results = provider.search(" apple ", 10, timeout_seconds=2)

    assert [r.symbol for r in results] == ["AAPL", "APLE", "AAPL.NE"]
    assert [r.name for r in results] == ["Apple Inc.", "Apple Hospitality REIT, Inc.", "Apple Inc."]
    assert [r.exchange for r in results] == ["NASDAQ", "NYSE", "NEO Exchange"]  # empty code -> full name
    path, query = sent(transport)
    assert path == "/stable/search-symbol"
    assert assert_keyed(query) == {"query": ["apple"], "limit": ["10"]}


def test_search_keeps_at_most_limit_results_and_refuses_an_empty_query() -> None:
    provider, _ = fmp(body(SEARCH_BODY))  # NOT A RECORDING
    assert len(provider.search("apple", 1, timeout_seconds=2)) == 1
    with pytest.raises(ValueError, match="empty"):
        build_search_request("  ", 5)


# --- FMP's own error answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error", "fragment"),
    [
        (INVALID_KEY_401, ProviderAuthError, "Invalid API KEY"),
        (body({"Error Message": INVALID_KEY_MESSAGE}), ProviderAuthError, "Invalid API KEY"),  # same text on 200
        (LIMIT_200, ProviderRateLimited, "Limit Reach"),
        (EXCLUSIVE_402, ProviderUnsupported, "Exclusive Endpoint"),
        (EXCLUSIVE_200, ProviderUnsupported, "Exclusive Endpoint"),
        (LEGACY_403, ProviderUnsupported, "Legacy Endpoint"),
        (FORBIDDEN_403, ProviderAuthError, "HTTP 403"),
        (CannedResponse(402, b"Payment Required", "text/plain"), ProviderAuthError, "HTTP 402"),
        # NOT A RECORDING: other error objects FMP (and OpenBB's FMP client) know of; wording invented.
        (body({"Error Message": "Invalid API call. Please retry."}), ProviderParseError, "Invalid API call"),
        (body({"error": "Something went wrong"}), ProviderParseError, "Something went wrong"),
        # A JSON object where the documented answer is an array.
        (body(raw(QUOTE_STABLE)[0]), ProviderParseError, "expected a JSON array"),
        (body([1, 2]), ProviderParseError, "not a JSON object"),
        (body([{"price": 1.0, "timestamp": 1}]), ProviderParseError, "without a symbol"),
    ],
)
def test_fmp_error_answers_become_typed_errors(
    answer: CannedResponse, error: type[ProviderError], fragment: str
) -> None:
    provider, _ = fmp(answer)
    with pytest.raises(error) as caught:
        provider.get_quotes(["AAPL"], timeout_seconds=2)
    assert fragment in str(caught.value)
    assert caught.value.provider == "fmp"
    assert type(caught.value) is error


def test_quota_answer_with_429_carries_retry_after() -> None:
    provider, _ = fmp(LIMIT_429)
    with pytest.raises(ProviderRateLimited) as caught:
        provider.get_profile("AAPL", timeout_seconds=2)
    assert caught.value.retry_after_seconds == 60


def test_a_plan_refusal_is_remembered_per_endpoint_for_a_while() -> None:
    clock = Clock(DEFAULT_NOW)
    transport = CannedTransport({FMP_BASE_URL: [EXCLUSIVE_402, rec(QUOTE_STABLE)]})
    provider = FmpProvider(build_session(timeout_cap_seconds=5, transport=transport), api_key=API_KEY, clock=clock)

    with pytest.raises(ProviderUnsupported) as caught:
        provider.get_quotes(["AAPL", "MSFT"], timeout_seconds=2)  # batch-quote: a paid endpoint
    assert not caught.value.counts_as_failure
    assert not caught.value.retryable
    with pytest.raises(ProviderUnsupported, match="not in this FMP plan"):
        provider.get_quotes(["AAPL", "MSFT"], timeout_seconds=2)
    assert len(transport.requests_seen) == 1  # the second refusal spent no quota

    assert "AAPL" in provider.get_quotes(["AAPL"], timeout_seconds=2)  # the single quote is another endpoint
    clock.now += PLAN_REFUSAL_MEMORY + timedelta(seconds=1)
    assert "AAPL" in provider.get_quotes(["AAPL", "MSFT"], timeout_seconds=2)  # asked again later
    assert [sent(transport, i)[0] for i in range(3)] == ["/stable/batch-quote", "/stable/quote", "/stable/batch-quote"]


# --- generic failures injected at the HTTP layer ---------------------------------------------------------

_EOD_BYTES = (FIXTURES / f"{EOD_STABLE}.json").read_bytes()
HALF_RECORDING = _EOD_BYTES[: len(_EOD_BYTES) // 2]  # truncated JSON: a genuine recording cut in half


@pytest.mark.parametrize(
    ("answer", "error", "fragment"),
    [
        (CannedResponse(500, b"Internal Server Error", "text/plain"), ProviderUnavailable, "HTTP 500"),
        (CannedResponse(503, b"<html><body>503</body></html>", "text/html"), ProviderUnavailable, "HTTP 503"),
        (CannedResponse(200, b"<html><body>maintenance</body></html>", "text/html"), ProviderParseError, "HTML"),
        (CannedResponse(200, HALF_RECORDING), ProviderParseError, "not valid JSON"),
        (CannedResponse(200, b"date,open,high\n2023-01-03,1,2", "text/csv"), ProviderParseError, "not valid JSON"),
        (CannedResponse(200, b"ok", "text/plain"), ProviderParseError, "not valid JSON"),
        (body({"symbol": "AAPL"}), ProviderParseError, "without 'historical'"),
        (body([{"date": "yesterday", "close": 1.0}]), ProviderParseError, "unreadable date"),
    ],
)
def test_transport_level_failures_become_typed_errors(
    answer: CannedResponse, error: type[ProviderError], fragment: str
) -> None:
    provider, _ = fmp(answer)
    with pytest.raises(error) as caught:
        provider.get_historical("AAPL", Period.MO1, Interval.D1, timeout_seconds=2)
    assert fragment in str(caught.value)
    assert caught.value.provider == "fmp"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retryable(status: int) -> None:
    provider, _ = fmp(CannedResponse(status, b"busy", "text/plain"))
    with pytest.raises(ProviderUnavailable) as caught:
        provider.get_quotes(["AAPL"], timeout_seconds=2)
    assert caught.value.retryable


def test_rate_limit_429_carries_retry_after() -> None:
    provider, _ = fmp(CannedResponse(429, b"Too Many Requests", "text/plain", headers={"Retry-After": "30"}))
    with pytest.raises(ProviderRateLimited) as caught:
        provider.get_quotes(["AAPL", "MSFT"], timeout_seconds=2)
    assert caught.value.retry_after_seconds == 30


# requests' own wording puts the full URL, apikey included, into its exception messages.
_URL_WITH_KEY = f"/stable/quote?symbol=AAPL&apikey={API_KEY}"


@pytest.mark.parametrize(
    ("exception", "error"),
    [
        (
            requests.ConnectTimeout(f"Max retries exceeded with url: {_URL_WITH_KEY} (connect timeout=2)"),
            ProviderTimeout,
        ),
        (requests.ReadTimeout(f"Read timed out. url: {_URL_WITH_KEY} (read timeout=2)"), ProviderTimeout),
        (requests.ConnectionError(f"Max retries exceeded with url: {_URL_WITH_KEY}"), ProviderUnavailable),
    ],
)
def test_network_failures_become_typed_errors(exception: Exception, error: type[ProviderError]) -> None:
    provider, _ = fmp(exception)
    with pytest.raises(error) as caught:
        provider.get_profile("AAPL", timeout_seconds=2)
    assert type(caught.value) is error
    assert caught.value.retryable


# --- the key stays secret --------------------------------------------------------------------------------


def _chain(error: BaseException) -> list[BaseException]:
    """The error and every exception linked to it (cause/context), as a traceback would show them."""
    seen: list[BaseException] = []
    node: BaseException | None = error
    while node is not None and node not in seen:
        seen.append(node)
        node = node.__cause__ or node.__context__
    return seen


@pytest.mark.parametrize(
    "answer",
    [
        requests.ReadTimeout(f"HTTPSConnectionPool(host='financialmodelingprep.com', port=443): {_URL_WITH_KEY}"),
        requests.ConnectTimeout(f"HTTPSConnectionPool(host='financialmodelingprep.com', port=443): {_URL_WITH_KEY}"),
        requests.ConnectionError(f"Max retries exceeded with url: {_URL_WITH_KEY}"),
        requests.TooManyRedirects(f"Exceeded 30 redirects: {_URL_WITH_KEY}"),
        INVALID_KEY_401,
        EXCLUSIVE_402,
        CannedResponse(500, b"boom", "text/plain"),
        LIMIT_429,
        LIMIT_200,
        # NOT A RECORDING: hypothetical error bodies that echo the key back (scrubbed by the adapter).
        CannedResponse(401, json_body({"Error Message": f"Invalid API KEY {API_KEY}"})),
        CannedResponse(403, json_body({"Error Message": f"key {API_KEY} is suspended"})),
        CannedResponse(400, json_body({"Error Message": f"bad request apikey={API_KEY}"})),
        body({"Error Message": f"Invalid API call for apikey={API_KEY}"}),
    ],
)
def test_the_key_is_in_no_error_message(answer: CannedResponse | Exception) -> None:
    provider, transport = fmp(answer)
    with pytest.raises(ProviderError) as caught:
        provider.get_quotes(["AAPL"], timeout_seconds=2)
    for linked in _chain(caught.value):
        assert API_KEY not in str(linked)
        assert API_KEY not in repr(linked)
        assert API_KEY not in str(linked.args)
    assert f"apikey={API_KEY}" in transport.requests_seen[0]  # it was sent, as FMP's query parameter


def test_built_requests_and_the_provider_never_show_the_key() -> None:
    provider, _ = fmp()
    for request in (
        build_quote_request(["AAPL", "MSFT"]),
        build_profile_request("AAPL"),
        build_search_request("apple", 5),
        build_historical_request("AAPL", Period.Y1, Interval.D1, today=date(2024, 1, 2)),
    ):
        assert isinstance(request, ProviderRequest)
        assert API_KEY not in repr(request)
    assert API_KEY not in repr(provider)


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="API key"):
        FmpProvider(requests.Session(), api_key="")


# --- a real local HTTP server ----------------------------------------------------------------------------


class _RecordingHandler(BaseHTTPRequestHandler):
    body: ClassVar[bytes] = (FIXTURES / f"{QUOTE_STABLE}.json").read_bytes()
    delay_seconds: ClassVar[float] = 0.0
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002
        return None


@pytest.fixture
def local_fmp() -> Iterator[tuple[str, type[_RecordingHandler]]]:
    handler = type("Handler", (_RecordingHandler,), {"seen": [], "delay_seconds": 0.0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_over_real_http_the_recording_maps_and_the_key_is_a_query_parameter(
    local_fmp: tuple[str, type[_RecordingHandler]],
) -> None:
    base_url, handler = local_fmp
    provider = FmpProvider(build_session(timeout_cap_seconds=2), api_key=API_KEY, base_url=base_url)
    quote = provider.get_quotes(["AAPL"], timeout_seconds=2)["AAPL"]
    assert quote.price == raw(QUOTE_STABLE)[0]["price"]
    [path] = handler.seen
    parts = urlsplit(path)
    assert parts.path == "/stable/quote"
    assert parse_qs(parts.query) == {"symbol": ["AAPL"], "apikey": [API_KEY]}


def test_over_real_http_a_slow_answer_is_a_timeout(local_fmp: tuple[str, type[_RecordingHandler]]) -> None:
    base_url, handler = local_fmp
    handler.delay_seconds = 1.5
    provider = FmpProvider(build_session(timeout_cap_seconds=2), api_key=API_KEY, base_url=base_url)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        provider.get_quotes(["AAPL"], timeout_seconds=0.3)
    assert time.monotonic() - started < 1.4
    for linked in _chain(caught.value):
        assert API_KEY not in str(linked)
