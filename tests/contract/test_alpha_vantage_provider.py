"""AlphaVantageProvider against genuine Alpha Vantage payloads (tests/fixtures/providers/alpha_vantage,
sources in its README.md), answered at the HTTP layer of the session the adapter really uses, plus one
test over a real local HTTP server. Failures are injected at the HTTP layer, never by patching the adapter.

Bodies that are NOT recordings are built in this file and named ``NOT_RECORDED_*`` / ``not_recorded_*``:
Alpha Vantage's throttle and error bodies (no genuine recording exists; their wording is quoted from
client code, as the shared fixtures README says), the TOP_GAINERS_LOSERS body (written from the documented
shape) and bodies derived from a recording by changing one thing (variables named ``derived``).
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import threading
import traceback
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.alpha_vantage import AlphaVantageProvider
from chalicelib.adapters.providers.alpha_vantage.historical import (
    build_historical_request,
    parse_historical_response,
    period_start,
)
from chalicelib.adapters.providers.alpha_vantage.news import parse_news_response
from chalicelib.adapters.providers.alpha_vantage.profile import parse_profile_response
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

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers" / "alpha_vantage"
PREFIX = "https://www.alphavantage.co/query"
API_KEY = "AV-TEST-KEY-93f1c2"
NEW_YORK = ZoneInfo("America/New_York")
PROVIDER = "alpha_vantage"

# --- bodies that are NOT recordings (wording quoted in ../shared/fixtures/README.md, from client code) ---
NOT_RECORDED_NOTE_THROTTLE = {
    "Note": "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls "
    "per day. Please visit https://www.alphavantage.co/premium/ if you would like to target a higher API call "
    "frequency."
}
NOT_RECORDED_INFORMATION_DAILY_LIMIT = {
    "Information": "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please "
    "subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily "
    "rate limits."
}
NOT_RECORDED_INFORMATION_PREMIUM = {
    "Information": "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the "
    "premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium endpoints"
}
NOT_RECORDED_ERROR_INVALID_CALL = {
    "Error Message": "Invalid API call. Please retry or visit the documentation "
    "(https://www.alphavantage.co/documentation/) for TIME_SERIES_DAILY."
}
NOT_RECORDED_ERROR_BAD_KEY = {
    "Error Message": "the parameter apikey is invalid or missing. Please claim your free API key on "
    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
}
# The CSV-mode answer for an unknown symbol, as the shared README quotes the client cache.
NOT_RECORDED_CSV_SYMBOL_NOT_FOUND = b"Symbol not found"
# TOP_GAINERS_LOSERS: no recording exists. Written from the documented shape
# {metadata, last_updated, top_gainers[], top_losers[], most_actively_traded[]}, items all strings.
NOT_RECORDED_MOVERS: dict[str, Any] = {
    "metadata": "Top gainers, losers, and most actively traded US tickers",
    "last_updated": "2024-01-12 16:16:00 US/Eastern",
    "top_gainers": [
        {"ticker": "AAA", "price": "1.2300", "change_amount": "0.6100", "change_percentage": "98.3871%", "volume": "5"},
        {"ticker": "BB+", "price": "2.0", "change_amount": "0.9", "change_percentage": "81.8182%", "volume": "10"},
        {"ticker": "CCCW", "price": "0.05", "change_amount": "0.02", "change_percentage": "66.6667%", "volume": "7"},
        {"ticker": "DDD", "price": "10.5", "change_amount": "3.5", "change_percentage": "50.0%", "volume": "1200"},
    ],
    "top_losers": [
        {"ticker": "EEE", "price": "0.5", "change_amount": "-1.5", "change_percentage": "-75.0%", "volume": "300"},
    ],
    "most_actively_traded": [
        {"ticker": "TSLA", "price": "218.89", "change_amount": "-8.33", "change_percentage": "-3.6661%", "volume": "1"},
        {"ticker": "NVDA", "price": "547.1", "change_amount": "5.0", "change_percentage": "0.9224%", "volume": "2"},
    ],
}


# --- helpers --------------------------------------------------------------------------------------------


def raw(name: str) -> Any:
    meta = json.loads((FIXTURES / f"{name}.meta.json").read_text())
    return json.loads((FIXTURES / meta["body_file"]).read_text())


def recording(name: str) -> CannedResponse:
    """A copied recording served as captured. Bodies saved by library authors have no HTTP metadata
    (status "200 (not recorded)"), which ``recorded`` cannot read: they are served as 200 JSON."""
    meta = json.loads((FIXTURES / f"{name}.meta.json").read_text())
    if isinstance(meta["status"], int):
        return recorded(name, directory=FIXTURES)
    return CannedResponse(200, (FIXTURES / meta["body_file"]).read_bytes(), "application/json")


def body(payload: object, status: int = 200, content_type: str = "application/json") -> CannedResponse:
    return CannedResponse(status, json_body(payload), content_type)


def fixed_clock(moment: datetime) -> Any:
    return lambda: moment


def provider_for(
    answers: list[CannedResponse | Exception], now: datetime | None = None
) -> tuple[AlphaVantageProvider, CannedTransport]:
    transport = CannedTransport({PREFIX: answers})
    session = build_session(timeout_cap_seconds=5, transport=transport)
    clock = fixed_clock(now or datetime(2024, 1, 16, 15, 0, tzinfo=UTC))
    return AlphaVantageProvider(session, api_key=API_KEY, clock=clock), transport


def sent(transport: CannedTransport) -> dict[str, str]:
    """The one request the adapter made, as its query parameters (each given once)."""
    assert len(transport.requests_seen) == 1, transport.requests_seen
    parts = urlsplit(transport.requests_seen[0])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == PREFIX
    query = parse_qs(parts.query, keep_blank_values=True)
    assert all(len(values) == 1 for values in query.values())
    return {key: values[0] for key, values in query.items()}


def ny(day: str, at: time) -> datetime:
    return datetime.combine(date.fromisoformat(day), at, tzinfo=NEW_YORK).astimezone(UTC)


def test_satisfies_the_provider_port() -> None:
    provider, _ = provider_for([])
    port: MarketDataProvider = provider
    assert port.vendor == "alpha_vantage"
    assert port.name == "alpha_vantage"
    assert port.max_symbols_per_quote_call == 1
    assert DataKind.INDICES not in port.capabilities
    assert DataKind.SECTORS not in port.capabilities
    assert {DataKind.QUOTE, DataKind.HISTORICAL, DataKind.PROFILE, DataKind.NEWS, DataKind.MOVERS} <= port.capabilities


def test_a_key_is_required() -> None:
    with pytest.raises(ValueError, match="API key"):
        AlphaVantageProvider(requests.Session(), api_key="")


# --- quotes -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "symbol"), [("GLOBAL_QUOTE_IBM", "IBM"), ("GLOBAL_QUOTE_MSFT", "MSFT"), ("GLOBAL_QUOTE_TSLA", "TSLA")]
)
def test_recorded_global_quote_maps_onto_the_standard_model(name: str, symbol: str) -> None:
    item = raw(name)["Global Quote"]
    provider, transport = provider_for([recording(name)])

    quotes = provider.get_quotes([symbol.lower()], timeout_seconds=2)

    quote = quotes[symbol]
    assert quote.symbol == item["01. symbol"] == symbol
    assert quote.price == float(item["05. price"])
    assert quote.open == float(item["02. open"])
    assert (quote.day_high, quote.day_low) == (float(item["03. high"]), float(item["04. low"]))
    assert quote.volume == int(item["06. volume"])
    assert quote.previous_close == float(item["08. previous close"])
    assert quote.change == float(item["09. change"])
    assert quote.change_percent == float(item["10. change percent"].rstrip("%"))
    # End-of-day data: the latest trading day's 16:00 New York close, in UTC.
    assert quote.as_of == ny(item["07. latest trading day"], time(16))
    assert quote.as_of.utcoffset() == timedelta(0)
    assert sent(transport) == {"function": "GLOBAL_QUOTE", "symbol": symbol, "datatype": "json", "apikey": API_KEY}


def test_msft_negative_change_percent_string_becomes_a_float() -> None:
    provider, _ = provider_for([recording("GLOBAL_QUOTE_MSFT")])
    quote = provider.get_quotes(["MSFT"], timeout_seconds=2)["MSFT"]
    assert raw("GLOBAL_QUOTE_MSFT")["Global Quote"]["10. change percent"] == "-0.5852%"
    assert quote.change_percent == -0.5852


def test_quote_of_the_session_still_open_is_not_stamped_in_the_future() -> None:
    # TSLA's latest trading day is 2023-07-03; at 15:00 New York that day the 16:00 close has not happened.
    during_session = ny("2023-07-03", time(15))
    provider, _ = provider_for([recording("GLOBAL_QUOTE_TSLA")], now=during_session)
    assert provider.get_quotes(["TSLA"], timeout_seconds=2)["TSLA"].as_of == during_session


def test_recorded_empty_global_quote_means_unknown_symbol_is_absent() -> None:
    assert raw("GLOBAL_QUOTE_invalid_symbol_empty") == {"Global Quote": {}}
    provider, transport = provider_for([recording("GLOBAL_QUOTE_invalid_symbol_empty")])
    assert provider.get_quotes(["TSLA2"], timeout_seconds=2) == {}
    assert sent(transport)["symbol"] == "TSLA2"


@pytest.mark.parametrize(
    "not_recorded_body",
    [{}, NOT_RECORDED_ERROR_INVALID_CALL],
    ids=["not_recorded_empty_object", "not_recorded_invalid_api_call"],
)
def test_other_unknown_symbol_answers_are_absent_too(not_recorded_body: dict[str, Any]) -> None:
    provider, _ = provider_for([body(not_recorded_body)])
    assert provider.get_quotes(["NOPE"], timeout_seconds=2) == {}


def test_index_symbol_is_absent_without_spending_a_call() -> None:
    provider, transport = provider_for([recording("GLOBAL_QUOTE_IBM")])
    assert provider.get_quotes(["^GSPC"], timeout_seconds=2) == {}
    assert provider.get_quotes([], timeout_seconds=2) == {}
    assert transport.requests_seen == []


def test_more_than_one_symbol_per_call_is_a_programming_error() -> None:
    provider, transport = provider_for([recording("GLOBAL_QUOTE_IBM")])
    with pytest.raises(ValueError, match="one symbol per request"):
        provider.get_quotes(["IBM", "MSFT"], timeout_seconds=2)
    assert transport.requests_seen == []


# --- historical ---------------------------------------------------------------------------------------


def test_recorded_daily_series_maps_oldest_first_in_utc() -> None:
    series = raw("TIME_SERIES_DAILY_IBM_trimmed")["Time Series (Daily)"]
    provider, transport = provider_for(
        [recording("TIME_SERIES_DAILY_IBM_trimmed")], now=datetime(2020, 5, 8, 21, tzinfo=UTC)
    )

    history = provider.get_historical("IBM", Period.D5, Interval.D1, timeout_seconds=2)

    assert [bar.timestamp for bar in history.bars] == [ny("2020-05-07", time(9, 30)), ny("2020-05-08", time(9, 30))]
    for bar, day in zip(history.bars, ["2020-05-07", "2020-05-08"], strict=True):
        values = series[day]
        assert (bar.open, bar.high, bar.low, bar.close) == (
            float(values["1. open"]),
            float(values["2. high"]),
            float(values["3. low"]),
            float(values["4. close"]),
        )
        assert bar.volume == int(values["5. volume"])
        assert bar.adj_close is None
    assert history.as_of == history.bars[-1].timestamp
    assert (history.symbol, history.period, history.interval) == ("IBM", Period.D5, Interval.D1)
    assert sent(transport) == {
        "function": "TIME_SERIES_DAILY",
        "symbol": "IBM",
        "outputsize": "compact",
        "datatype": "json",
        "apikey": API_KEY,
    }


def test_one_day_period_is_the_latest_session() -> None:
    provider, _ = provider_for([recording("TIME_SERIES_DAILY_IBM_trimmed")], now=datetime(2020, 5, 9, 12, tzinfo=UTC))
    history = provider.get_historical("IBM", Period.D1, Interval.D1, timeout_seconds=2)
    assert [bar.close for bar in history.bars] == [121.79]


@pytest.mark.parametrize("name", ["TIME_SERIES_DAILY_ADJUSTED_IBM_trimmed", "TIME_SERIES_DAILY_ADJUSTED_VZ_compact"])
def test_recorded_adjusted_series_read_adjusted_close_and_renumbered_volume(name: str) -> None:
    series = raw(name)["Time Series (Daily)"]
    newest = max(series)
    provider, _ = provider_for([recording(name)], now=ny(newest, time(18)))

    history = provider.get_historical("X", Period.MAX, Interval.D1, timeout_seconds=2)

    assert len(history.bars) == len(series)
    assert [bar.timestamp for bar in history.bars] == sorted(ny(day, time(9, 30)) for day in series)
    for bar in history.bars:
        values = series[bar.timestamp.astimezone(NEW_YORK).date().isoformat()]
        assert bar.close == float(values["4. close"])
        assert bar.adj_close == float(values["5. adjusted close"])
        assert bar.volume == int(values["6. volume"])


def test_period_limits_the_bars_to_its_range() -> None:
    series = raw("TIME_SERIES_DAILY_ADJUSTED_VZ_compact")["Time Series (Daily)"]
    now = datetime(2023, 7, 5, 14, tzinfo=UTC)
    provider, transport = provider_for([recording("TIME_SERIES_DAILY_ADJUSTED_VZ_compact")], now=now)

    history = provider.get_historical("VZ", Period.MO1, Interval.D1, timeout_seconds=2)

    expected = sorted(day for day in series if day >= "2023-06-05")
    assert [bar.timestamp.astimezone(NEW_YORK).date().isoformat() for bar in history.bars] == expected
    assert sent(transport)["outputsize"] == "compact"


@pytest.mark.parametrize(
    ("period", "outputsize"),
    [
        (Period.D5, "compact"),
        (Period.MO1, "compact"),
        (Period.MO3, "compact"),
        (Period.MO6, "full"),
        (Period.Y1, "full"),
        (Period.MAX, "full"),
        (Period.YTD, "compact"),  # 2024-01-16: two weeks into the year
    ],
)
def test_daily_outputsize_is_full_only_when_the_period_exceeds_100_bars(period: Period, outputsize: str) -> None:
    provider, transport = provider_for([recording("TIME_SERIES_DAILY_ADJUSTED_VZ_compact")])
    # The 2023 recording lies outside some 2024 periods; only the request matters here.
    with contextlib.suppress(ProviderNoData):
        provider.get_historical("VZ", period, Interval.D1, timeout_seconds=2)
    assert sent(transport)["outputsize"] == outputsize


def test_ytd_late_in_the_year_needs_full() -> None:
    request = build_historical_request("VZ", Period.YTD, Interval.D1, now=datetime(2024, 11, 1, tzinfo=UTC))
    assert request.params["outputsize"] == "full"
    assert "apikey" not in request.params  # the build step never holds the key


@pytest.mark.parametrize(
    ("interval", "function"), [(Interval.WK1, "TIME_SERIES_WEEKLY"), (Interval.MO1, "TIME_SERIES_MONTHLY")]
)
def test_weekly_and_monthly_requests(interval: Interval, function: str) -> None:
    request = build_historical_request("IBM", Period.Y5, interval, now=datetime(2024, 1, 16, tzinfo=UTC))
    assert request.url == PREFIX
    assert dict(request.params) == {"function": function, "symbol": "IBM", "datatype": "json"}


@pytest.mark.parametrize(
    ("key", "interval", "first_open"),
    [("Weekly Time Series", Interval.WK1, "2020-05-04"), ("Monthly Time Series", Interval.MO1, "2020-05-01")],
)
def test_weekly_and_monthly_series_are_found_by_name_and_stamped_at_their_open(
    key: str, interval: Interval, first_open: str
) -> None:
    # derived (not a recording as is): the IBM daily recording with its series renamed as the weekly /
    # monthly functions name it (no weekly or monthly recording exists). Both bars share a week and a month.
    derived = raw("TIME_SERIES_DAILY_IBM_trimmed")
    derived[key] = derived.pop("Time Series (Daily)")
    history = parse_historical_response(
        derived, PROVIDER, symbol="IBM", period=Period.Y1, interval=interval, now=datetime(2020, 5, 9, tzinfo=UTC)
    )
    assert {bar.timestamp for bar in history.bars} == {ny(first_open, time(9, 30))}


def test_recorded_intraday_series_converts_us_eastern_to_utc() -> None:
    payload = raw("TIME_SERIES_INTRADAY_MSFT_1min")
    series = payload["Time Series (1min)"]
    assert payload["Meta Data"]["6. Time Zone"] == "US/Eastern"
    provider, transport = provider_for(
        [recording("TIME_SERIES_INTRADAY_MSFT_1min")], now=datetime(2017, 12, 18, 21, tzinfo=UTC)
    )

    history = provider.get_historical("MSFT", Period.D1, Interval.M1, timeout_seconds=2)

    assert len(history.bars) == len(series) == 100
    assert history.bars[0].timestamp == datetime(2017, 12, 18, 18, 17, tzinfo=UTC)  # 13:17 EST
    assert history.bars[-1].timestamp == datetime(2017, 12, 18, 19, 56, tzinfo=UTC)  # 14:56 EST
    newest = series["2017-12-18 14:56:00"]
    assert (history.bars[-1].close, history.bars[-1].volume) == (float(newest["4. close"]), int(newest["5. volume"]))
    assert history.as_of == datetime(2017, 12, 18, 19, 56, tzinfo=UTC)
    assert sent(transport) == {
        "function": "TIME_SERIES_INTRADAY",
        "symbol": "MSFT",
        "interval": "1min",
        "outputsize": "full",  # a 1d session of 1-minute bars is more than compact's 100
        "datatype": "json",
        "apikey": API_KEY,
    }


@pytest.mark.parametrize(
    ("interval", "period", "av_interval", "outputsize"),
    [
        (Interval.M5, Period.D1, "5min", "full"),
        (Interval.M15, Period.D1, "15min", "compact"),
        (Interval.M30, Period.D5, "30min", "full"),
        (Interval.H1, Period.D1, "60min", "compact"),
        (Interval.H1, Period.D5, "60min", "compact"),
    ],
)
def test_intraday_interval_and_outputsize(
    interval: Interval, period: Period, av_interval: str, outputsize: str
) -> None:
    request = build_historical_request("MSFT", period, interval, now=datetime(2024, 1, 16, tzinfo=UTC))
    assert (request.params["interval"], request.params["outputsize"]) == (av_interval, outputsize)


@pytest.mark.parametrize("period", [Period.MO1, Period.Y1, Period.MAX])
def test_intraday_beyond_five_days_is_unsupported_without_a_call(period: Period) -> None:
    provider, transport = provider_for([recording("TIME_SERIES_INTRADAY_MSFT_1min")])
    with pytest.raises(ProviderUnsupported):
        provider.get_historical("MSFT", period, Interval.M5, timeout_seconds=2)
    assert transport.requests_seen == []


def test_series_older_than_the_period_is_no_data() -> None:
    provider, _ = provider_for([recording("TIME_SERIES_DAILY_IBM_trimmed")], now=datetime(2024, 1, 16, tzinfo=UTC))
    with pytest.raises(ProviderNoData):
        provider.get_historical("IBM", Period.MO1, Interval.D1, timeout_seconds=2)


@pytest.mark.parametrize(
    "not_recorded_body", [NOT_RECORDED_ERROR_INVALID_CALL, {}], ids=["invalid_api_call", "empty_object"]
)
def test_historical_for_an_unknown_symbol_is_symbol_not_found(not_recorded_body: dict[str, Any]) -> None:
    provider, _ = provider_for([body(not_recorded_body)])
    with pytest.raises(ProviderSymbolNotFound):
        provider.get_historical("NOPE", Period.MO1, Interval.D1, timeout_seconds=2)


def test_bars_without_a_close_are_dropped() -> None:
    derived = raw("TIME_SERIES_DAILY_IBM_trimmed")  # derived (not a recording as is): one close replaced by "None"
    derived["Time Series (Daily)"]["2020-05-07"]["4. close"] = "None"
    history = parse_historical_response(
        derived, PROVIDER, symbol="IBM", period=Period.MO1, interval=Interval.D1, now=datetime(2020, 5, 9, tzinfo=UTC)
    )
    assert [bar.close for bar in history.bars] == [121.79]


def test_period_start_uses_the_clock() -> None:
    now = datetime(2024, 3, 31, 15, tzinfo=UTC)
    assert period_start(Period.MO1, now) == ny("2024-02-29", time(0))  # clamped to February's last day
    assert period_start(Period.Y1, now) == ny("2023-03-31", time(0))
    assert period_start(Period.YTD, now) == ny("2024-01-01", time(0))
    assert period_start(Period.MAX, now) is None


# --- profile -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["OVERVIEW_IBM", "OVERVIEW_IBM_2"])
def test_recorded_overview_maps_onto_the_profile(name: str) -> None:
    overview = raw(name)
    now = datetime(2024, 1, 16, 15, tzinfo=UTC)
    provider, transport = provider_for([recording(name)], now=now)

    profile = provider.get_profile("IBM", timeout_seconds=2)

    assert profile.symbol == overview["Symbol"]
    assert profile.name == overview["Name"]
    assert (profile.exchange, profile.currency, profile.country) == (
        overview["Exchange"],
        overview["Currency"],
        overview["Country"],
    )
    assert (profile.sector, profile.industry) == (overview["Sector"], overview["Industry"])
    assert profile.description == overview["Description"]
    assert profile.market_cap == int(overview["MarketCapitalization"])
    assert profile.employees == (int(overview["FullTimeEmployees"]) if "FullTimeEmployees" in overview else None)
    assert profile.website is None  # these payloads predate OVERVIEW's "OfficialSite"
    assert profile.as_of == now
    assert sent(transport) == {"function": "OVERVIEW", "symbol": "IBM", "datatype": "json", "apikey": API_KEY}


def test_overview_placeholders_become_none() -> None:
    derived = copy.deepcopy(
        raw("OVERVIEW_IBM")
    )  # derived (not a recording as is): placeholders written into a recording
    derived.update({"Sector": "None", "Industry": "-", "MarketCapitalization": "None", "FullTimeEmployees": "-"})
    derived["OfficialSite"] = "https://www.ibm.com"
    profile = parse_profile_response(derived, PROVIDER, symbol="IBM", now=datetime(2024, 1, 1, tzinfo=UTC))
    assert (profile.sector, profile.industry, profile.market_cap, profile.employees) == (None, None, None, None)
    assert profile.website == "https://www.ibm.com"


def test_empty_overview_is_symbol_not_found() -> None:
    provider, _ = provider_for([body({})])  # not_recorded: {} is what the README says OVERVIEW answers
    with pytest.raises(ProviderSymbolNotFound):
        provider.get_profile("NOPE", timeout_seconds=2)


# --- search ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "query"), [("SYMBOL_SEARCH_BA", "BA"), ("SYMBOL_SEARCH_tesco", "tesco")])
def test_recorded_symbol_search_maps_best_matches_in_order(name: str, query: str) -> None:
    matches = raw(name)["bestMatches"]
    provider, transport = provider_for([recording(name)])

    results = provider.search(query, 3, timeout_seconds=2)

    assert [r.symbol for r in results] == [m["1. symbol"] for m in matches[:3]]
    assert [r.name for r in results] == [m["2. name"] for m in matches[:3]]
    assert {r.asset_type for r in results} == {"equity"}
    assert sent(transport) == {"function": "SYMBOL_SEARCH", "keywords": query, "datatype": "json", "apikey": API_KEY}


def test_search_without_a_limit_makes_no_call() -> None:
    provider, transport = provider_for([recording("SYMBOL_SEARCH_BA")])
    assert provider.search("BA", 0, timeout_seconds=2) == []
    assert transport.requests_seen == []


# --- news -------------------------------------------------------------------------------------------------


def test_recorded_news_sentiment_maps_onto_articles() -> None:
    feed = raw("NEWS_SENTIMENT_ACCD_trimmed")["feed"]
    provider, transport = provider_for([recording("NEWS_SENTIMENT_ACCD_trimmed")])

    articles = provider.get_news("ACCD", 5, timeout_seconds=2)

    assert len(articles) == 5
    first, item = articles[0], feed[0]
    assert (first.title, first.url, first.publisher, first.summary) == (
        item["title"],
        item["url"],
        item["source"],
        item["summary"],
    )
    # time_published is UTC (see _published_at): 20220914T141049 -> 2022-09-14T14:10:49Z
    assert item["time_published"] == "20220914T141049"
    assert first.published_at == datetime(2022, 9, 14, 14, 10, 49, tzinfo=UTC)
    assert first.symbols == [t["ticker"] for t in item["ticker_sentiment"]]
    accd = next(t for t in item["ticker_sentiment"] if t["ticker"] == "ACCD")
    assert first.sentiment_score == float(accd["ticker_sentiment_score"]) != item["overall_sentiment_score"]
    assert sent(transport) == {
        "function": "NEWS_SENTIMENT",
        "tickers": "ACCD",
        "sort": "LATEST",
        "limit": "5",
        "datatype": "json",
        "apikey": API_KEY,
    }


def test_news_sentiment_falls_back_to_the_overall_score() -> None:
    feed = raw("NEWS_SENTIMENT_ACCD_trimmed")["feed"]
    articles = parse_news_response(raw("NEWS_SENTIMENT_ACCD_trimmed"), PROVIDER, symbol="WFC", limit=len(feed))
    for article, item in zip(articles, feed, strict=True):
        wfc = [t for t in item["ticker_sentiment"] if t["ticker"] == "WFC"]
        expected = float(wfc[0]["ticker_sentiment_score"]) if wfc else item["overall_sentiment_score"]
        assert article.sentiment_score == expected


def test_news_without_coverage_is_no_data() -> None:
    not_recorded = {
        "Information": "Invalid inputs. Please refer to the API documentation "
        "https://www.alphavantage.co/documentation#newsapi and try again."
    }
    provider, _ = provider_for([body(not_recorded)])
    with pytest.raises(ProviderNoData):
        provider.get_news("ZZZZ", 5, timeout_seconds=2)


# --- movers (NOT a recording: NOT_RECORDED_MOVERS) ------------------------------------------------------


@pytest.mark.parametrize(
    ("mover_type", "key"),
    [(MoverType.GAINERS, "top_gainers"), (MoverType.LOSERS, "top_losers"), (MoverType.ACTIVES, "most_actively_traded")],
)
def test_movers_map_each_list(mover_type: MoverType, key: str) -> None:
    provider, transport = provider_for([body(NOT_RECORDED_MOVERS)])

    quotes = provider.get_movers(mover_type, 10, timeout_seconds=2)

    valid = [item for item in NOT_RECORDED_MOVERS[key] if item["ticker"] != "BB+"]
    assert [q.symbol for q in quotes] == [item["ticker"] for item in valid]
    for quote, item in zip(quotes, valid, strict=True):
        assert quote.price == float(item["price"])
        assert quote.change == float(item["change_amount"])
        assert quote.change_percent == float(item["change_percentage"].rstrip("%"))
        assert quote.volume == int(item["volume"])
        # "2024-01-12 16:16:00 US/Eastern" -> 21:16 UTC (EST, UTC-5)
        assert quote.as_of == datetime(2024, 1, 12, 21, 16, tzinfo=UTC)
    assert sent(transport) == {"function": "TOP_GAINERS_LOSERS", "datatype": "json", "apikey": API_KEY}


def test_movers_limit_counts_only_valid_symbols() -> None:
    provider, _ = provider_for([body(NOT_RECORDED_MOVERS)])
    quotes = provider.get_movers(MoverType.GAINERS, 2, timeout_seconds=2)
    assert [q.symbol for q in quotes] == ["AAA", "CCCW"]  # "BB+" is not a ticker the service accepts


def test_movers_stamp_without_zone_name_is_read_as_new_york() -> None:
    not_recorded = {**NOT_RECORDED_MOVERS, "last_updated": "2024-07-12 16:16:00"}
    provider, _ = provider_for([body(not_recorded)])
    quote = provider.get_movers(MoverType.ACTIVES, 1, timeout_seconds=2)[0]
    assert quote.as_of == datetime(2024, 7, 12, 20, 16, tzinfo=UTC)  # EDT, UTC-4


# --- Alpha Vantage's HTTP-200 quirks (NOT recordings: wording from client code) -----------------------


@pytest.mark.parametrize(
    ("not_recorded_body", "error", "retry_after"),
    [
        (NOT_RECORDED_NOTE_THROTTLE, ProviderRateLimited, 60),
        # Mentions "premium plans" too, but it is the daily throttle, not a premium refusal.
        (NOT_RECORDED_INFORMATION_DAILY_LIMIT, ProviderRateLimited, None),
        (NOT_RECORDED_INFORMATION_PREMIUM, ProviderUnsupported, None),
        (NOT_RECORDED_ERROR_BAD_KEY, ProviderAuthError, None),
    ],
    ids=["note_throttle", "information_daily_limit", "information_premium", "error_message_bad_key"],
)
@pytest.mark.parametrize("call", ["quote", "historical", "profile", "search", "news", "movers"])
def test_http_200_message_bodies_become_typed_errors(
    not_recorded_body: dict[str, str], error: type[ProviderError], retry_after: int | None, call: str
) -> None:
    provider, _ = provider_for([body(not_recorded_body)])
    with pytest.raises(error) as caught:
        _call(provider, call)
    assert type(caught.value) is error
    assert caught.value.retry_after_seconds == retry_after


def _call(provider: AlphaVantageProvider, call: str) -> object:
    if call == "quote":
        return provider.get_quotes(["IBM"], timeout_seconds=2)
    if call == "historical":
        return provider.get_historical("IBM", Period.MO1, Interval.D1, timeout_seconds=2)
    if call == "profile":
        return provider.get_profile("IBM", timeout_seconds=2)
    if call == "search":
        return provider.search("IBM", 5, timeout_seconds=2)
    if call == "news":
        return provider.get_news("IBM", 5, timeout_seconds=2)
    return provider.get_movers(MoverType.GAINERS, 5, timeout_seconds=2)


def test_premium_refusal_does_not_count_against_the_breaker() -> None:
    provider, _ = provider_for([body(NOT_RECORDED_INFORMATION_PREMIUM)])
    with pytest.raises(ProviderUnsupported) as caught:
        provider.get_historical("IBM", Period.Y1, Interval.D1, timeout_seconds=2)
    assert caught.value.counts_as_failure is False


def test_invalid_api_call_without_a_symbol_is_unavailable() -> None:
    provider, _ = provider_for([body(NOT_RECORDED_ERROR_INVALID_CALL)])
    with pytest.raises(ProviderUnavailable) as caught:
        provider.search("IBM", 5, timeout_seconds=2)
    assert caught.value.retryable


def test_recorded_csv_answer_is_a_parse_error() -> None:
    # A genuine CSV recording: the adapter always asks for JSON, so CSV means something went wrong.
    provider, _ = provider_for([recording("GLOBAL_QUOTE_TSLA_csv")])
    with pytest.raises(ProviderParseError):
        provider.get_quotes(["TSLA"], timeout_seconds=2)


def test_csv_symbol_not_found_text_is_a_parse_error() -> None:
    provider, _ = provider_for([CannedResponse(200, NOT_RECORDED_CSV_SYMBOL_NOT_FOUND, "text/plain")])
    with pytest.raises(ProviderParseError):
        provider.get_historical("NOPE", Period.MO1, Interval.D1, timeout_seconds=2)


@pytest.mark.parametrize("payload", [[], "Symbol not found", {"Meta Data": {}}, {"Global Quote": "x"}])
def test_payloads_of_the_wrong_shape_are_parse_errors(payload: object) -> None:
    provider, _ = provider_for([body(payload), body(payload)])
    with pytest.raises(ProviderParseError):
        provider.get_historical("IBM", Period.MO1, Interval.D1, timeout_seconds=2)
    if isinstance(payload, dict) and "Meta Data" in payload:
        return
    with pytest.raises(ProviderParseError):
        provider.get_quotes(["IBM"], timeout_seconds=2)


# --- HTTP-layer failures ------------------------------------------------------------------------------


def _truncated_recording() -> CannedResponse:
    data = (FIXTURES / "GLOBAL_QUOTE_IBM.json").read_bytes()
    return CannedResponse(200, data[: len(data) // 2], "application/json")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (CannedResponse(429, b"Too Many Requests", "text/plain", {"Retry-After": "30"}), ProviderRateLimited),
        (CannedResponse(500, b"Internal Server Error", "text/plain"), ProviderUnavailable),
        (CannedResponse(503, b"<html><body>Service Unavailable</body></html>", "text/html"), ProviderUnavailable),
        (CannedResponse(401, b'{"Error Message": "unauthorized"}', "application/json"), ProviderAuthError),
        (CannedResponse(403, b"<html>Forbidden</html>", "text/html"), ProviderAuthError),
        (CannedResponse(200, b"<html><body>Cloudflare: checking</body></html>", "text/html"), ProviderParseError),
        (_truncated_recording(), ProviderParseError),
        (CannedResponse(200, b"this is not json", "text/plain"), ProviderParseError),
        (CannedResponse(200, b"", "application/json"), ProviderParseError),
    ],
    ids=["429", "500", "503_html", "401", "403", "html_page", "truncated_json", "wrong_content_type", "empty_body"],
)
def test_http_failures_become_typed_errors(answer: CannedResponse, error: type[ProviderError]) -> None:
    provider, _ = provider_for([answer])
    with pytest.raises(error) as caught:
        provider.get_quotes(["IBM"], timeout_seconds=2)
    assert type(caught.value) is error
    if answer.status == 429:
        assert caught.value.retry_after_seconds == 30
    if answer.status >= 500:
        assert caught.value.retryable


@pytest.mark.parametrize(
    ("exception", "error"),
    [
        (requests.ConnectTimeout("connect timed out"), ProviderTimeout),
        (requests.ReadTimeout("read timed out"), ProviderTimeout),
        (requests.ConnectionError("connection refused"), ProviderUnavailable),
    ],
)
def test_network_failures_become_typed_errors(exception: Exception, error: type[ProviderError]) -> None:
    provider, _ = provider_for([exception])
    with pytest.raises(error) as caught:
        provider.get_profile("IBM", timeout_seconds=2)
    assert caught.value.retryable


# --- the key never leaks ---------------------------------------------------------------------------------

_URL_WITH_KEY = f"/query?function=GLOBAL_QUOTE&symbol=IBM&datatype=json&apikey={API_KEY}"


@pytest.mark.parametrize(
    "answer",
    [
        requests.ReadTimeout(f"HTTPSConnectionPool(host='www.alphavantage.co'): Read timed out. url: {_URL_WITH_KEY}"),
        requests.ConnectionError(f"Max retries exceeded with url: {_URL_WITH_KEY}"),
        CannedResponse(401, json_body({"Error Message": f"apikey {API_KEY} is invalid"})),
        CannedResponse(403, f"<html>denied for {_URL_WITH_KEY}</html>".encode(), "text/html"),
        CannedResponse(500, b"Internal Server Error", "text/plain"),
        CannedResponse(429, b"slow down", "text/plain"),
        body(
            {
                "Information": f"We have detected your API key as {API_KEY} and our standard API rate limit is 25 "
                "requests per day."
            }
        ),
        body({"Error Message": f"the parameter apikey {API_KEY} is invalid or missing."}),
    ],
    ids=["timeout", "connection_error", "401_echo", "403_html", "500", "429", "information_echo", "bad_key_echo"],
)
def test_the_key_is_in_no_error_message_or_traceback(answer: CannedResponse | Exception) -> None:
    provider, transport = provider_for([answer])
    with pytest.raises(ProviderError) as caught:
        provider.get_quotes(["IBM"], timeout_seconds=2)
    assert API_KEY in transport.requests_seen[0]  # it was sent...
    assert API_KEY not in str(caught.value)  # ...and appears nowhere in what the caller can log
    assert API_KEY not in "".join(traceback.format_exception(caught.value))
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


# --- a real local HTTP server ------------------------------------------------------------------------------


class _Server:
    def __init__(self) -> None:
        self.paths: list[str] = []
        self.release = threading.Event()
        self.body = (FIXTURES / "GLOBAL_QUOTE_IBM.json").read_bytes()


@pytest.fixture
def local_server() -> Iterator[tuple[str, _Server]]:
    state = _Server()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.paths.append(self.path)
            if "symbol=SLOW" in self.path:
                state.release.wait(5)  # longer than the client's timeout
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(state.body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002 - the stdlib's signature
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/query", state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_over_a_real_local_http_server(local_server: tuple[str, _Server]) -> None:
    url, state = local_server
    provider = AlphaVantageProvider(build_session(timeout_cap_seconds=2), api_key=API_KEY, base_url=url)

    quote = provider.get_quotes(["IBM"], timeout_seconds=1)["IBM"]

    assert quote.price == float(raw("GLOBAL_QUOTE_IBM")["Global Quote"]["05. price"])
    query = parse_qs(urlsplit(state.paths[0]).query)
    assert query["apikey"] == [API_KEY]
    assert query["function"] == ["GLOBAL_QUOTE"]


def test_a_server_slower_than_the_timeout_is_a_provider_timeout(local_server: tuple[str, _Server]) -> None:
    url, _ = local_server
    provider = AlphaVantageProvider(build_session(timeout_cap_seconds=2), api_key=API_KEY, base_url=url)
    with pytest.raises(ProviderTimeout) as caught:
        provider.get_quotes(["SLOW"], timeout_seconds=0.3)
    assert API_KEY not in "".join(traceback.format_exception(caught.value))
