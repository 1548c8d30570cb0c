"""YahooProvider (yfinance underneath) against genuine recorded Yahoo responses, answered at the HTTP
layer of the session yfinance really uses; failures are injected there too, never by patching the adapter."""

from __future__ import annotations

import copy
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from chalicelib.adapters.http import TimeoutCappedAdapter
from chalicelib.adapters.providers.yahoo import YahooProvider
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
from infra.local.replay.transport import json_body
from tests.fakes.yahoo_http import (
    CHART_PREFIX,
    QUOTE_PREFIX,
    QUOTE_SUMMARY_PREFIX,
    SCREENER_PREFIX,
    SEARCH_PREFIX,
    CannedResponse,
    recorded,
    recorded_json,
    recorded_meta,
    requests_to,
    yahoo_provider,
    yahoo_routes,
    yahoo_transport,
)


def test_recorded_aapl_quote_maps_onto_the_standard_model(tmp_path: Path) -> None:
    raw = recorded_json("quote_AAPL")["quoteResponse"]["result"][0]
    transport = yahoo_transport([recorded("quote_AAPL")])

    quotes = yahoo_provider(transport, tmp_path).get_quotes(["AAPL"], timeout_seconds=2)

    quote = quotes["AAPL"]
    assert quote.price == raw["regularMarketPrice"] == 244.6
    assert quote.change == pytest.approx(raw["regularMarketChange"])
    assert quote.change_percent == pytest.approx(raw["regularMarketChangePercent"])
    assert quote.volume == raw["regularMarketVolume"]
    assert quote.previous_close == raw["regularMarketPreviousClose"]
    assert (quote.day_low, quote.day_high) == (raw["regularMarketDayLow"], raw["regularMarketDayHigh"])
    assert quote.market_cap == raw["marketCap"]
    assert quote.name == "Apple Inc."
    assert quote.exchange == "NasdaqGS"
    assert quote.as_of == datetime.fromtimestamp(raw["regularMarketTime"], tz=UTC)


def test_request_goes_to_v7_quote_with_the_symbols_and_yfinances_crumb(tmp_path: Path) -> None:
    transport = yahoo_transport([recorded("quote_AAPL")])
    yahoo_provider(transport, tmp_path).get_quotes(["AAPL"], timeout_seconds=2)
    quote_calls = [url for url in transport.requests_seen if url.startswith(QUOTE_PREFIX)]
    assert len(quote_calls) == 1
    query = parse_qs(urlsplit(quote_calls[0]).query)
    assert query["symbols"] == ["AAPL"]
    # yfinance did its cookie/crumb handshake through our session (its YfData singleton keeps the crumb
    # per process, so which canned crumb it holds depends on test order).
    assert query["crumb"][0] in {"test-crumb", "replay-crumb"}


def test_batch_recording_yields_every_symbol_from_one_request(tmp_path: Path) -> None:
    transport = yahoo_transport([recorded("quote_AAPL_BABA_batch")])
    quotes = yahoo_provider(transport, tmp_path).get_quotes(["AAPL", "BABA"], timeout_seconds=2)
    assert set(quotes) == {"AAPL", "BABA"}
    assert quotes["BABA"].price == 124.73
    assert len([u for u in transport.requests_seen if u.startswith(QUOTE_PREFIX)]) == 1


def test_unknown_symbol_is_absent_not_an_error(tmp_path: Path) -> None:
    transport = yahoo_transport([recorded("quote_SIX_unknown_symbol_empty")])
    assert yahoo_provider(transport, tmp_path).get_quotes(["SIX"], timeout_seconds=2) == {}


def test_sparse_recording_leaves_missing_fields_empty(tmp_path: Path) -> None:
    transport = yahoo_transport([recorded("quote_MSFT_fields_beta")])
    quote = yahoo_provider(transport, tmp_path).get_quotes(["MSFT"], timeout_seconds=2)["MSFT"]
    assert quote.price == 408.43
    assert quote.change is None
    assert quote.volume is None


@pytest.mark.parametrize(("name", "symbol"), [("quote_BTC-USD", "BTC-USD"), ("quote_EURUSD_X", "EURUSD=X")])
def test_non_equity_symbols_keep_their_spelling(tmp_path: Path, name: str, symbol: str) -> None:
    transport = yahoo_transport([recorded(name)])
    quotes = yahoo_provider(transport, tmp_path).get_quotes([symbol], timeout_seconds=2)
    assert symbol in quotes
    assert quotes[symbol].price > 0


def _body(status: int, body: bytes, content_type: str = "application/json") -> CannedResponse:
    return CannedResponse(status, body, content_type)


@pytest.mark.parametrize(
    ("answer", "error", "fragment"),
    [
        (_body(429, b"Too Many Requests", "text/plain"), ProviderRateLimited, "rate limited"),
        (_body(500, b"<html><body>Internal error</body></html>", "text/html"), ProviderUnavailable, "HTTP 500"),
        (
            _body(401, b'{"finance":{"result":null,"error":{"code":"Unauthorized","description":"Invalid Crumb"}}}'),
            ProviderUnavailable,
            "Invalid Crumb",
        ),
        (_body(200, b'{"quoteResponse":{"result":[{"symbol":"AAPL","regularMa'), ProviderParseError, "not JSON"),
        (_body(200, b"<html>consent</html>", "text/html"), ProviderParseError, "not JSON"),
        (_body(200, b"[]"), ProviderParseError, "JSON object"),
        (_body(200, b'{"quoteResponse":{"result":"x","error":null}}'), ProviderParseError, "not a list"),
        (
            _body(200, b'{"quoteResponse":{"result":null,"error":{"code":"x","description":"Bad symbols"}}}'),
            ProviderUnavailable,
            "Bad symbols",
        ),
        (_body(200, b'{"quoteResponse":{"result":[{"symbol":"AAPL","regularMarketPrice":-1}]}}'), None, None),
    ],
)
def test_vendor_failures_become_typed_errors(
    tmp_path: Path, answer: CannedResponse, error: type[Exception] | None, fragment: str | None
) -> None:
    provider = yahoo_provider(yahoo_transport([answer]), tmp_path)
    if error is None:
        # A negative price is odd but not malformed; it maps (models only bound volume).
        assert provider.get_quotes(["AAPL"], timeout_seconds=2)["AAPL"].price == -1
        return
    with pytest.raises(error) as caught:
        provider.get_quotes(["AAPL"], timeout_seconds=2)
    assert fragment is not None
    assert fragment in str(caught.value)


NOT_LISTED = b'{"quoteResponse":{"result":[],"error":{"code":"Not Found","description":"APTV was not yet listed"}}}'


def test_a_not_found_error_for_one_symbol_is_symbol_not_found_with_its_reason(tmp_path: Path) -> None:
    provider = yahoo_provider(yahoo_transport([_body(200, NOT_LISTED)]), tmp_path)
    with pytest.raises(ProviderSymbolNotFound) as caught:
        provider.get_quotes(["APTV"], timeout_seconds=2)
    assert "APTV was not yet listed" in caught.value.message
    assert not caught.value.counts_as_failure


def test_a_not_found_error_in_a_batch_leaves_the_missing_symbols_unknown(tmp_path: Path) -> None:
    body = (
        b'{"quoteResponse":{"result":[{"symbol":"AAPL","regularMarketPrice":1.5}],'
        b'"error":{"code":"Not Found","description":"APTV was not yet listed"}}}'
    )
    provider = yahoo_provider(yahoo_transport([_body(200, body)]), tmp_path)
    assert set(provider.get_quotes(["AAPL", "APTV"], timeout_seconds=2)) == {"AAPL"}
    empty = yahoo_provider(yahoo_transport([_body(200, NOT_LISTED)]), tmp_path)
    assert empty.get_quotes(["APTV", "DXC"], timeout_seconds=2) == {}


@pytest.mark.parametrize(
    ("exception", "error"),
    [
        (requests.ReadTimeout("read timed out"), ProviderTimeout),
        (requests.ConnectTimeout("connect timed out"), ProviderTimeout),
        (requests.ConnectionError("connection refused"), ProviderUnavailable),
    ],
)
def test_network_failures_become_typed_errors(tmp_path: Path, exception: Exception, error: type[Exception]) -> None:
    provider = yahoo_provider(yahoo_transport([exception]), tmp_path)
    with pytest.raises(error):
        provider.get_quotes(["AAPL"], timeout_seconds=2)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts TCP connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/v7/finance/quote"
    stop.set()
    server.close()


def test_session_caps_every_timeout_even_a_librarys_own(silent_server: str) -> None:
    # yfinance asks for 30 s on its cookie/crumb calls; the mounted adapter cuts that to our cap.
    session = requests.Session()
    session.mount("http://", TimeoutCappedAdapter(cap_seconds=0.3))
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        session.get(silent_server, timeout=30)
    assert time.monotonic() - started < 5  # far below the 30 s asked for


# --- every data kind: historical (v8 chart), profile (v10 quoteSummary), search and news (v1 search),
# --- movers (v1 predefined screener). Bodies are the genuine recordings unless a test says otherwise.

NOW = datetime(2025, 2, 24, 15, 0, tzinfo=UTC)


def _clock() -> datetime:
    return NOW


def _provider(transport: requests.adapters.BaseAdapter, tmp_path: Path) -> YahooProvider:
    return yahoo_provider(transport, tmp_path, clock=_clock)


def test_every_data_kind_is_declared_and_quotes_still_batch_200() -> None:
    assert YahooProvider.supported == frozenset(DataKind)
    assert YahooProvider.quote_batch_size == 200


def _chart(tmp_path: Path, name: str, symbol: str, period: Period = Period.Y1, interval: Interval = Interval.D1) -> Any:
    transport = yahoo_routes({CHART_PREFIX: [recorded(name)]})
    history = _provider(transport, tmp_path).get_historical(symbol, period, interval, timeout_seconds=2)
    return history, transport


def test_recorded_chart_maps_every_bar_onto_the_standard_model(tmp_path: Path) -> None:
    name = "chart_AAPL_1d_2020-08-31_2020-11-07"
    raw = recorded_json(name)["chart"]["result"][0]
    history, _ = _chart(tmp_path, name, "AAPL", Period.MO3)

    quote = raw["indicators"]["quote"][0]
    adjclose = raw["indicators"]["adjclose"][0]["adjclose"]
    assert len(history.bars) == len(raw["timestamp"]) == 49
    for index, bar in enumerate(history.bars):
        assert bar.timestamp == datetime.fromtimestamp(raw["timestamp"][index], tz=UTC)
        assert bar.open == quote["open"][index]
        assert bar.high == quote["high"][index]
        assert bar.low == quote["low"][index]
        assert bar.close == quote["close"][index]
        assert bar.volume == quote["volume"][index]
        assert bar.adj_close == adjclose[index]
    assert history.symbol == "AAPL"
    assert (history.period, history.interval) == (Period.MO3, Interval.D1)
    assert history.currency == raw["meta"]["currency"] == "USD"
    assert history.as_of == history.bars[-1].timestamp
    # Daily bars are stamped at the 09:30 New York open (13:30 UTC in EDT).
    assert (history.bars[0].timestamp.hour, history.bars[0].timestamp.minute) == (13, 30)


@pytest.mark.parametrize(
    ("name", "symbol", "path"),
    [
        ("chart_EURUSD_X_1d_2020-01-01_2020-01-03", "EURUSD=X", "/v8/finance/chart/EURUSD%3DX"),
        ("chart_BTC-USD_1d_2020-01-01_2020-01-03", "BTC-USD", "/v8/finance/chart/BTC-USD"),
        ("chart_QQQ_1d_2020-01-01_2020-01-03", "QQQ", "/v8/finance/chart/QQQ"),
        ("chart_NVDA_1d_2021-02-01_2022-01-31_events_split", "NVDA", "/v8/finance/chart/NVDA"),
    ],
)
def test_other_recorded_charts_map_and_the_request_is_yahoos_documented_one(
    tmp_path: Path, name: str, symbol: str, path: str
) -> None:
    raw = recorded_json(name)["chart"]["result"][0]
    history, transport = _chart(tmp_path, name, symbol)
    assert [bar.close for bar in history.bars] == raw["indicators"]["quote"][0]["close"]
    assert history.currency == raw["meta"]["currency"]
    [(sent_path, query)] = requests_to(transport, CHART_PREFIX)
    assert sent_path == path
    assert query["range"] == ["1y"]
    assert query["interval"] == ["1d"]
    assert query["includeAdjustedClose"] == ["true"]
    assert query["events"] == ["div,split"]


def test_index_symbol_is_escaped_in_the_chart_path(tmp_path: Path) -> None:
    # The body is the genuine QQQ recording; only the path the adapter builds is under test here.
    _, transport = _chart(tmp_path, "chart_QQQ_1d_2020-01-01_2020-01-03", "^GSPC")
    assert requests_to(transport, CHART_PREFIX)[0][0] == "/v8/finance/chart/%5EGSPC"


@pytest.mark.parametrize(
    ("interval", "yahoo_interval"),
    [(Interval.H1, "60m"), (Interval.M30, "30m"), (Interval.WK1, "1wk"), (Interval.MO1, "1mo")],
)
def test_intervals_are_spelled_the_way_yahoo_spells_them(
    tmp_path: Path, interval: Interval, yahoo_interval: str
) -> None:
    _, transport = _chart(tmp_path, "chart_AAPL_1d_2020-01-01_2020-01-03", "AAPL", Period.D5, interval)
    assert requests_to(transport, CHART_PREFIX)[0][1]["interval"] == [yahoo_interval]


def test_bars_with_a_null_close_are_dropped(tmp_path: Path) -> None:
    # NOT a recording as served: the genuine EURUSD=X recording with one close set to null, the way
    # Yahoo sends FX/crypto holes (the recorded files have none).
    payload = copy.deepcopy(recorded_json("chart_EURUSD_X_1d_2020-01-01_2020-01-03"))
    result = payload["chart"]["result"][0]
    result["indicators"]["quote"][0]["close"][1] = None
    transport = yahoo_routes({CHART_PREFIX: [CannedResponse(200, json_body(payload))]})
    history = _provider(transport, tmp_path).get_historical("EURUSD=X", Period.D5, Interval.D1, timeout_seconds=2)
    assert [bar.timestamp.timestamp() for bar in history.bars] == [result["timestamp"][0], result["timestamp"][2]]


def test_weekend_range_without_a_timestamp_key_is_no_data(tmp_path: Path) -> None:
    assert "timestamp" not in recorded_json("chart_AAPL_1m_2025-02-01_empty_weekend")["chart"]["result"][0]
    with pytest.raises(ProviderNoData):
        _chart(tmp_path, "chart_AAPL_1m_2025-02-01_empty_weekend", "AAPL", Period.D1, Interval.M1)


@pytest.mark.parametrize(
    ("name", "symbol", "error"),
    [
        ("chart_MDLY_404_delisted", "MDLY", ProviderSymbolNotFound),
        ("chart_SI_404_delisted", "SI", ProviderSymbolNotFound),
        ("chart_BEKE_400_no_data_for_range", "BEKE", ProviderNoData),
    ],
)
def test_chart_error_objects_become_typed_errors(
    tmp_path: Path, name: str, symbol: str, error: type[ProviderError]
) -> None:
    description = recorded_json(name)["chart"]["error"]["description"]
    assert recorded_meta(name)["status"] in (400, 404)
    with pytest.raises(error) as caught:
        _chart(tmp_path, name, symbol)
    assert description in caught.value.message


def test_chart_error_object_inside_a_200_is_typed_too(tmp_path: Path) -> None:
    # NOT a recording as served: the genuine MDLY error body, answered with HTTP 200 instead of 404.
    body = (recorded(name="chart_MDLY_404_delisted")).body
    transport = yahoo_routes({CHART_PREFIX: [CannedResponse(200, body)]})
    with pytest.raises(ProviderSymbolNotFound):
        _provider(transport, tmp_path).get_historical("MDLY", Period.Y1, Interval.D1, timeout_seconds=2)


@pytest.mark.parametrize(
    ("period", "interval"),
    [
        (Period.MO1, Interval.M1),
        (Period.MO3, Interval.M5),
        (Period.MO3, Interval.M30),
        (Period.Y5, Interval.H1),
        (Period.MAX, Interval.M15),
    ],
)
def test_ranges_beyond_yahoos_intraday_limits_are_unsupported_without_a_request(
    tmp_path: Path, period: Period, interval: Interval
) -> None:
    transport = yahoo_routes({CHART_PREFIX: [recorded("chart_AAPL_1d_2020-01-01_2020-01-03")]})
    with pytest.raises(ProviderUnsupported) as caught:
        _provider(transport, tmp_path).get_historical("AAPL", period, interval, timeout_seconds=2)
    assert caught.value.provider == "yahoo"
    assert requests_to(transport, CHART_PREFIX) == []


@pytest.mark.parametrize(
    ("period", "interval"),
    [(Period.D5, Interval.M1), (Period.MO1, Interval.M5), (Period.MO1, Interval.M30), (Period.Y2, Interval.H1)],
)
def test_ranges_within_yahoos_intraday_limits_are_asked_for(tmp_path: Path, period: Period, interval: Interval) -> None:
    _, transport = _chart(tmp_path, "chart_AAPL_1d_2020-01-01_2020-01-03", "AAPL", period, interval)
    assert requests_to(transport, CHART_PREFIX)[0][1]["range"] == [period.value]


@pytest.mark.parametrize(("today", "allowed"), [(datetime(2025, 1, 3, tzinfo=UTC), True), (NOW, False)])
def test_year_to_date_minute_bars_depend_on_the_clock(tmp_path: Path, today: datetime, allowed: bool) -> None:
    transport = yahoo_routes({CHART_PREFIX: [recorded("chart_AAPL_1d_2020-01-01_2020-01-03")]})
    provider = yahoo_provider(transport, tmp_path, clock=lambda: today)
    if allowed:
        provider.get_historical("AAPL", Period.YTD, Interval.M1, timeout_seconds=2)
        assert len(requests_to(transport, CHART_PREFIX)) == 1
    else:
        with pytest.raises(ProviderUnsupported):
            provider.get_historical("AAPL", Period.YTD, Interval.M1, timeout_seconds=2)


# --- profile ---


def _combined_quote_summary(*names: str) -> CannedResponse:
    """NOT one recording: the modules of several genuine single-module recordings side by side in one
    result, which is what Yahoo answers for modules=a,b (each module's content is verbatim)."""
    result: dict[str, Any] = {}
    for name in names:
        result.update(recorded_json(name)["quoteSummary"]["result"][0])
    return CannedResponse(200, json_body({"quoteSummary": {"result": [result], "error": None}}))


def test_profile_maps_asset_profile_and_price_modules(tmp_path: Path) -> None:
    profile_raw = recorded_json("quoteSummary_assetProfile_AAPL")["quoteSummary"]["result"][0]["assetProfile"]
    price_raw = recorded_json("quoteSummary_price_AAPL")["quoteSummary"]["result"][0]["price"]
    answer = _combined_quote_summary("quoteSummary_assetProfile_AAPL", "quoteSummary_price_AAPL")
    transport = yahoo_routes({QUOTE_SUMMARY_PREFIX: [answer]})

    profile = _provider(transport, tmp_path).get_profile("AAPL", timeout_seconds=2)

    assert profile.symbol == "AAPL"
    assert profile.description == profile_raw["longBusinessSummary"]
    assert profile.sector == profile_raw["sector"] == "Technology"
    assert profile.industry == profile_raw["industry"]
    assert profile.website == profile_raw["website"]
    assert profile.country == profile_raw["country"]
    assert profile.employees == profile_raw["fullTimeEmployees"]
    assert profile.name == price_raw["longName"]
    assert profile.exchange == price_raw["exchangeName"]
    assert profile.currency == price_raw["currency"]
    assert profile.market_cap == price_raw["marketCap"]
    assert profile.as_of == datetime.fromtimestamp(price_raw["regularMarketTime"], tz=UTC)
    [(path, query)] = requests_to(transport, QUOTE_SUMMARY_PREFIX)
    assert path == "/v10/finance/quoteSummary/AAPL"
    assert query["modules"] == ["assetProfile,price"]
    assert query["formatted"] == ["false"]


@pytest.mark.parametrize("name", ["quoteSummary_assetProfile_AAPL", "quoteSummary_summaryProfile_AAPL"])
def test_profile_module_alone_maps_without_price_fields(tmp_path: Path, name: str) -> None:
    module = name.split("_")[1]
    raw = recorded_json(name)["quoteSummary"]["result"][0][module]
    transport = yahoo_routes({QUOTE_SUMMARY_PREFIX: [recorded(name)]})
    profile = _provider(transport, tmp_path).get_profile("AAPL", timeout_seconds=2)
    assert profile.description == raw["longBusinessSummary"]
    assert profile.employees == raw["fullTimeEmployees"]
    assert (profile.name, profile.market_cap) == (None, None)
    assert profile.as_of == NOW  # no market time in these modules: the retrieval time


def test_price_module_alone_gives_name_exchange_and_market_cap(tmp_path: Path) -> None:
    raw = recorded_json("quoteSummary_price_AAPL")["quoteSummary"]["result"][0]["price"]
    transport = yahoo_routes({QUOTE_SUMMARY_PREFIX: [recorded("quoteSummary_price_AAPL")]})
    profile = _provider(transport, tmp_path).get_profile("AAPL", timeout_seconds=2)
    assert (profile.name, profile.exchange, profile.market_cap) == (
        raw["longName"],
        raw["exchangeName"],
        raw["marketCap"],
    )
    assert profile.description is None


def test_quote_summary_404_is_symbol_not_found(tmp_path: Path) -> None:
    name = "quoteSummary_assetProfile_GC_F_404"
    assert recorded_meta(name)["status"] == 404
    transport = yahoo_routes({QUOTE_SUMMARY_PREFIX: [recorded(name)]})
    with pytest.raises(ProviderSymbolNotFound) as caught:
        _provider(transport, tmp_path).get_profile("GC=F", timeout_seconds=2)
    assert recorded_json(name)["quoteSummary"]["error"]["description"] in caught.value.message
    assert requests_to(transport, QUOTE_SUMMARY_PREFIX)[0][0] == "/v10/finance/quoteSummary/GC%3DF"


# --- search and news ---


def test_search_maps_the_recorded_quotes(tmp_path: Path) -> None:
    raw = [item for item in recorded_json("search_AAPL")["quotes"] if "symbol" in item]
    transport = yahoo_routes({SEARCH_PREFIX: [recorded("search_AAPL")]})

    results = _provider(transport, tmp_path).search("AAPL", 10, timeout_seconds=2)

    # The Crunchbase entry ("AAPlasma", isYahooFinance false, no symbol) is not an instrument.
    assert [r.symbol for r in results] == [item["symbol"] for item in raw]
    for result, item in zip(results, raw, strict=True):
        assert result.name == item["longname"]
        assert result.exchange == item["exchDisp"]
        assert result.asset_type == item["quoteType"].lower()
        assert result.sector == item.get("sector")
    assert results[0].sector == "Technology"
    [(path, query)] = requests_to(transport, SEARCH_PREFIX)
    assert path == "/v1/finance/search"
    assert query["q"] == ["AAPL"]
    assert query["quotesCount"] == ["10"]
    assert query["newsCount"] == ["0"]


def test_search_honours_the_limit(tmp_path: Path) -> None:
    transport = yahoo_routes({SEARCH_PREFIX: [recorded("search_GOOG")]})
    results = _provider(transport, tmp_path).search("GOOG", 2, timeout_seconds=2)
    assert [r.symbol for r in results] == ["GOOG", "GOOGL"]


def test_search_400_missing_query_is_unsupported(tmp_path: Path) -> None:
    name = "search_missing_q_400"
    assert recorded_meta(name)["status"] == 400
    transport = yahoo_routes({SEARCH_PREFIX: [recorded(name)]})
    with pytest.raises(ProviderUnsupported) as caught:
        _provider(transport, tmp_path).search("AAPL", 5, timeout_seconds=2)
    assert "Missing required query parameter=q" in caught.value.message


def test_blank_search_is_unsupported_without_a_request(tmp_path: Path) -> None:
    transport = yahoo_routes({SEARCH_PREFIX: [recorded("search_AAPL")]})
    with pytest.raises(ProviderUnsupported):
        _provider(transport, tmp_path).search("  ", 5, timeout_seconds=2)
    assert requests_to(transport, SEARCH_PREFIX) == []


@pytest.mark.parametrize("name", ["search_AAPL", "search_GOOG"])
def test_news_maps_the_recorded_articles(tmp_path: Path, name: str) -> None:
    raw = recorded_json(name)["news"]
    symbol = name.removeprefix("search_")
    transport = yahoo_routes({SEARCH_PREFIX: [recorded(name)]})

    articles = _provider(transport, tmp_path).get_news(symbol, 10, timeout_seconds=2)

    assert len(articles) == len(raw) == 4
    for article, item in zip(articles, raw, strict=True):
        assert article.title == item["title"]
        assert article.url == item["link"]
        assert article.publisher == item["publisher"]
        assert article.published_at == datetime.fromtimestamp(item["providerPublishTime"], tz=UTC)
        assert article.symbols == item.get("relatedTickers", [])
        assert article.sentiment_score is None
        assert article.summary is None
    [(_, query)] = requests_to(transport, SEARCH_PREFIX)
    assert query["q"] == [symbol]
    assert query["quotesCount"] == ["0"]
    assert query["newsCount"] == ["10"]


def test_news_honours_the_limit(tmp_path: Path) -> None:
    transport = yahoo_routes({SEARCH_PREFIX: [recorded("search_AAPL")]})
    assert len(_provider(transport, tmp_path).get_news("AAPL", 2, timeout_seconds=2)) == 2


# --- movers ---


@pytest.mark.parametrize(
    ("mover_type", "name"), [(MoverType.GAINERS, "screener_day_gainers"), (MoverType.LOSERS, "screener_day_losers")]
)
def test_movers_map_the_recorded_screener_quotes(tmp_path: Path, mover_type: MoverType, name: str) -> None:
    raw = recorded_json(name)["finance"]["result"][0]["quotes"]
    transport = yahoo_routes({SCREENER_PREFIX: [recorded(name)]})

    movers = _provider(transport, tmp_path).get_movers(mover_type, 5, timeout_seconds=2)

    assert [q.symbol for q in movers] == [item["symbol"] for item in raw]
    for quote, item in zip(movers, raw, strict=True):
        assert quote.price == item["regularMarketPrice"]
        assert quote.change_percent == item["regularMarketChangePercent"]
        assert quote.volume == item["regularMarketVolume"]
        assert quote.market_cap == item.get("marketCap")
        assert quote.as_of == datetime.fromtimestamp(item["regularMarketTime"], tz=UTC)
    [(path, query)] = requests_to(transport, SCREENER_PREFIX)
    assert path == "/v1/finance/screener/predefined/saved"
    assert query["count"] == ["5"]
    assert query["formatted"] == ["false"]


@pytest.mark.parametrize(
    ("mover_type", "screener"),
    [(MoverType.GAINERS, "day_gainers"), (MoverType.LOSERS, "day_losers"), (MoverType.ACTIVES, "most_actives")],
)
def test_movers_ask_for_yahoos_predefined_screener(tmp_path: Path, mover_type: MoverType, screener: str) -> None:
    # The body is the genuine day_gainers recording (no most_actives recording exists); only the request
    # is under test here.
    transport = yahoo_routes({SCREENER_PREFIX: [recorded("screener_day_gainers")]})
    movers = _provider(transport, tmp_path).get_movers(mover_type, 3, timeout_seconds=2)
    assert len(movers) == 3
    assert requests_to(transport, SCREENER_PREFIX)[0][1]["scrIds"] == [screener]


# --- failures injected at the HTTP layer, for every new kind ---

KindCall = Callable[[YahooProvider], object]
KIND_CALLS: dict[str, tuple[str, str, KindCall]] = {
    "historical": (
        CHART_PREFIX,
        "chart_AAPL_1d_2020-08-31_2020-11-07",
        lambda p: p.get_historical("AAPL", Period.Y1, Interval.D1, timeout_seconds=2),
    ),
    "profile": (
        QUOTE_SUMMARY_PREFIX,
        "quoteSummary_assetProfile_AAPL",
        lambda p: p.get_profile("AAPL", timeout_seconds=2),
    ),
    "search": (SEARCH_PREFIX, "search_AAPL", lambda p: p.search("AAPL", 5, timeout_seconds=2)),
    "news": (SEARCH_PREFIX, "search_AAPL", lambda p: p.get_news("AAPL", 5, timeout_seconds=2)),
    "movers": (
        SCREENER_PREFIX,
        "screener_day_gainers",
        lambda p: p.get_movers(MoverType.GAINERS, 5, timeout_seconds=2),
    ),
}


def _truncated(name: str) -> CannedResponse:
    body = recorded(name).body
    return CannedResponse(200, body[: len(body) // 2])


FAILURES: dict[str, tuple[Callable[[str], CannedResponse | Exception], type[ProviderError]]] = {
    "429": (
        lambda _: CannedResponse(429, b"Too Many Requests", "text/plain", {"Retry-After": "30"}),
        ProviderRateLimited,
    ),
    "500": (
        lambda _: CannedResponse(500, b"<html><body>Internal error</body></html>", "text/html"),
        ProviderUnavailable,
    ),
    "503": (lambda _: CannedResponse(503, b"", "text/plain"), ProviderUnavailable),
    # Yahoo's 401 is "Invalid Crumb": session plumbing yfinance renews, so retryable, not an auth failure.
    "401": (
        lambda _: CannedResponse(
            401, b'{"finance":{"result":null,"error":{"code":"Unauthorized","description":"Invalid Crumb"}}}'
        ),
        ProviderUnavailable,
    ),
    "403": (lambda _: CannedResponse(403, b"<html>Forbidden</html>", "text/html"), ProviderAuthError),
    "html": (lambda _: CannedResponse(200, b"<html><body>consent</body></html>", "text/html"), ProviderParseError),
    "truncated": (_truncated, ProviderParseError),
    "wrong-content-type": (lambda _: CannedResponse(200, b"OK", "text/plain"), ProviderParseError),
    "json-array": (lambda _: CannedResponse(200, b"[]"), ProviderParseError),
    "read-timeout": (lambda _: requests.ReadTimeout("read timed out"), ProviderTimeout),
    "connect-timeout": (lambda _: requests.ConnectTimeout("connect timed out"), ProviderTimeout),
    "connection-error": (lambda _: requests.ConnectionError("refused"), ProviderUnavailable),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("kind", sorted(KIND_CALLS))
def test_failures_become_typed_errors_for_every_kind(tmp_path: Path, kind: str, failure: str) -> None:
    prefix, name, call = KIND_CALLS[kind]
    make_answer, error = FAILURES[failure]
    transport = yahoo_routes({prefix: [make_answer(name)]})
    with pytest.raises(error) as caught:
        call(_provider(transport, tmp_path))
    assert type(caught.value) is error
    if error is ProviderUnavailable:
        assert caught.value.retryable


@pytest.mark.parametrize("kind", sorted(KIND_CALLS))
def test_every_kind_serves_its_recording(tmp_path: Path, kind: str) -> None:
    prefix, name, call = KIND_CALLS[kind]
    transport = yahoo_routes({prefix: [recorded(name)]})
    assert call(_provider(transport, tmp_path))
    assert len(requests_to(transport, prefix)) == 1  # one upstream request per call


# --- over real sockets: a local HTTP server answering the chart endpoint ---


class _ChartHandler(BaseHTTPRequestHandler):
    delay_seconds = 0.0
    body = b""

    def do_GET(self) -> None:
        time.sleep(self.delay_seconds)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        except OSError:  # the client gave up (the timeout test)
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002
        return None


@pytest.fixture
def chart_server() -> Iterator[tuple[str, type[_ChartHandler]]]:
    handler = type(
        "Handler", (_ChartHandler,), {"body": recorded("chart_NVDA_1d_2021-02-01_2022-01-31_events_split").body}
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _real_socket_provider(base_url: str, tmp_path: Path) -> YahooProvider:
    # yfinance's cookie/crumb handshake (https, Yahoo's hosts) is answered canned; the chart request
    # (http, our local server) goes over a real socket through the timeout-capping adapter.
    session = requests.Session()
    session.mount("https://", yahoo_routes({}))
    session.mount("http://", TimeoutCappedAdapter(cap_seconds=2))
    return YahooProvider(session, cache_dir=str(tmp_path), base_url=base_url, clock=_clock)


def test_chart_over_a_real_local_http_server(chart_server: tuple[str, type[_ChartHandler]], tmp_path: Path) -> None:
    base_url, _ = chart_server
    raw = recorded_json("chart_NVDA_1d_2021-02-01_2022-01-31_events_split")["chart"]["result"][0]
    history = _real_socket_provider(base_url, tmp_path).get_historical(
        "NVDA", Period.Y1, Interval.D1, timeout_seconds=2
    )
    assert [bar.close for bar in history.bars] == raw["indicators"]["quote"][0]["close"]


def test_a_server_slower_than_the_timeout_is_a_provider_timeout(
    chart_server: tuple[str, type[_ChartHandler]], tmp_path: Path
) -> None:
    base_url, handler = chart_server
    handler.delay_seconds = 1.5
    started = time.monotonic()
    with pytest.raises(ProviderTimeout):
        _real_socket_provider(base_url, tmp_path).get_historical("NVDA", Period.Y1, Interval.D1, timeout_seconds=0.3)
    assert time.monotonic() - started < 1.5
