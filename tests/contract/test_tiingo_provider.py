"""TiingoProvider against genuine recorded Tiingo responses (tests/fixtures/providers/tiingo/, see its README),
answered at the HTTP layer of the requests session the adapter really uses, plus one test over a real local
HTTP server. Failures are injected at the HTTP layer too, never by patching the adapter.

Bodies that are not recordings are marked NOT A RECORDING where they are defined."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.base import ProviderRequest
from chalicelib.adapters.providers.tiingo import TIINGO_BASE_URL, TiingoProvider
from chalicelib.adapters.providers.tiingo.historical import build_historical_request, parse_historical_response
from chalicelib.adapters.providers.tiingo.quote import build_quote_request
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
from infra.local.replay.transport import CannedResponse, CannedTransport, json_body, recorded

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers" / "tiingo"
API_KEY = "tiingo-test-key-0123456789abcdef"

DAILY_2015 = "daily_prices_GOOGL_2015-01-01_2015-01-05"
DAILY_LATEST = "daily_prices_GOOGL_latest"
WEEKLY_2018 = "daily_prices_GOOGL_weekly_2018-01"
IEX_30MIN = "iex_prices_GOOGL_30min_2018-01-02"
META = "daily_meta_GOOGL"
NEWS = "news_aapl_googl_limit1"
NEWS_OLDER = "news_aapl_googl_limit1_older"
NEWS_403 = "news_bulk_download_403_no_permission"

# NOT A RECORDING: Tiingo's unknown-ticker answer as the shared fixtures README describes it (unverified).
UNKNOWN_TICKER_404 = CannedResponse(404, json_body({"detail": "Error: Ticker 'NOPE' not found"}))
# NOT A RECORDING: a bad token gets HTTP 401 (documented status); the body text is a guess.
BAD_TOKEN_401 = CannedResponse(401, json_body({"detail": "Invalid token."}))
# NOT A RECORDING: a search body written from the field list in the fixtures README; values invented.
SEARCH_BODY: list[dict[str, Any]] = [
    {
        "ticker": "aapl",
        "name": "Apple Inc",
        "assetType": "Stock",
        "isActive": True,
        "permaTicker": "US000000000001",
        "openFIGIComposite": "BBG000000001",
        "countryCode": "US",
    },
    {
        "ticker": "APLE",
        "name": "Apple Hospitality REIT Inc",
        "assetType": "Stock",
        "isActive": True,
        "permaTicker": "US000000000002",
        "openFIGIComposite": None,
        "countryCode": "US",
    },
    {
        "ticker": "AAPL-OLD",
        "name": "A delisted listing",
        "assetType": "Stock",
        "isActive": False,
        "permaTicker": "US000000000003",
        "openFIGIComposite": None,
        "countryCode": "US",
    },
    {
        "ticker": "XLK",
        "name": "Technology Select Sector SPDR Fund",
        "assetType": "ETF",
        "isActive": True,
        "permaTicker": "US000000000004",
        "openFIGIComposite": None,
        "countryCode": "US",
    },
]


def raw(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def rec(name: str) -> CannedResponse:
    return recorded(name, directory=FIXTURES)


def body(payload: object, status: int = 200) -> CannedResponse:
    return CannedResponse(status, json_body(payload))


class HeaderRecordingTransport(CannedTransport):
    """CannedTransport that also keeps each request's headers (to check where the key went)."""

    def __init__(self, routes: Mapping[str, Iterable[CannedResponse | Exception]]) -> None:
        super().__init__(routes)
        self.headers_seen: list[dict[str, str]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.headers_seen.append(dict(request.headers))
        return super().send(request, **kwargs)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


DEFAULT_NOW = at("2015-01-06T15:00:00+00:00")


def tiingo(
    *answers: CannedResponse | Exception, now: datetime = DEFAULT_NOW
) -> tuple[TiingoProvider, HeaderRecordingTransport]:
    transport = HeaderRecordingTransport({TIINGO_BASE_URL: list(answers)})
    session = build_session(timeout_cap_seconds=5, transport=transport)
    return TiingoProvider(session, api_key=API_KEY, clock=lambda: now), transport


def sent(transport: HeaderRecordingTransport) -> tuple[str, dict[str, list[str]]]:
    """Path and query of the one request the adapter made."""
    assert len(transport.requests_seen) == 1, transport.requests_seen
    parts = urlsplit(transport.requests_seen[0])
    return parts.path, parse_qs(parts.query)


def assert_token_only_in_header(transport: HeaderRecordingTransport) -> None:
    assert transport.headers_seen[0]["Authorization"] == f"Token {API_KEY}"
    assert all(API_KEY not in url for url in transport.requests_seen)


# --- capabilities -------------------------------------------------------------------------------------


def test_declares_what_tiingo_serves() -> None:
    provider, _ = tiingo()
    assert provider.vendor == provider.name == "tiingo"
    assert provider.capabilities == {
        DataKind.QUOTE,
        DataKind.HISTORICAL,
        DataKind.PROFILE,
        DataKind.NEWS,
        DataKind.SEARCH,
    }
    assert provider.max_symbols_per_quote_call == 1
    with pytest.raises(ProviderUnsupported):
        provider.get_movers(MoverType.GAINERS, 5, timeout_seconds=1)


# --- quote (end of day from the daily bars) --------------------------------------------------------------


def test_quote_is_the_last_daily_bar_with_the_bar_before_as_previous_close() -> None:
    bars = raw(DAILY_2015)
    provider, transport = tiingo(rec(DAILY_2015), now=at("2015-01-06T15:00:00+00:00"))

    quote = provider.get_quotes(["GOOGL"], timeout_seconds=2)["GOOGL"]

    last, previous = bars[-1], bars[-2]
    assert quote.price == last["close"] == 519.46
    assert quote.previous_close == previous["close"] == 529.55
    assert quote.change == pytest.approx(last["close"] - previous["close"])
    assert quote.change_percent == pytest.approx((last["close"] - previous["close"]) / previous["close"] * 100)
    assert (quote.open, quote.day_high, quote.day_low) == (last["open"], last["high"], last["low"])
    assert quote.volume == last["volume"]
    # End of day: the 2015-01-05 session closed at 16:00 New York (EST) = 21:00 UTC.
    assert quote.as_of == at("2015-01-05T21:00:00+00:00")
    path, query = sent(transport)
    assert path == "/tiingo/daily/GOOGL/prices"
    assert query == {"startDate": ["2014-12-23"]}  # today (New York) minus 14 days
    assert_token_only_in_header(transport)


def test_quote_from_a_single_bar_has_no_change_and_reads_the_older_offset_format() -> None:
    bar = raw(DAILY_LATEST)[0]  # dated "2018-04-12T00:00:00+00:00"
    provider, _ = tiingo(rec(DAILY_LATEST), now=at("2018-04-13T02:42:05+00:00"))

    quote = provider.get_quotes(["GOOGL"], timeout_seconds=2)["GOOGL"]

    assert quote.price == bar["close"]
    assert quote.previous_close is None
    assert quote.change is None
    assert quote.change_percent is None
    assert quote.as_of == at("2018-04-12T20:00:00+00:00")  # 16:00 EDT


def test_quote_previous_close_is_put_on_the_new_share_basis_after_a_split() -> None:
    payload = copy.deepcopy(raw(DAILY_2015))
    payload[-1]["splitFactor"] = 2.0  # EDITED RECORDING: a 2-for-1 split on the last session
    provider, _ = tiingo(body(payload))
    quote = provider.get_quotes(["GOOGL"], timeout_seconds=2)["GOOGL"]
    assert quote.previous_close == pytest.approx(payload[-2]["close"] / 2)


def test_unknown_ticker_is_absent_from_quotes_not_an_error() -> None:
    provider, transport = tiingo(UNKNOWN_TICKER_404)
    assert provider.get_quotes(["NOPE"], timeout_seconds=2) == {}
    assert len(transport.requests_seen) == 1


def test_no_recent_bars_means_no_quote() -> None:
    provider, _ = tiingo(body([]))
    assert provider.get_quotes(["GOOGL"], timeout_seconds=2) == {}


def test_index_symbols_are_absent_without_spending_a_request() -> None:
    provider, transport = tiingo(rec(DAILY_2015))
    assert provider.get_quotes(["^GSPC"], timeout_seconds=2) == {}
    assert provider.get_quotes([], timeout_seconds=2) == {}
    assert transport.requests_seen == []


def test_one_symbol_per_quote_call() -> None:
    provider, transport = tiingo(rec(DAILY_2015))
    with pytest.raises(ValueError, match="one symbol per call"):
        provider.get_quotes(["GOOGL", "AAPL"], timeout_seconds=2)
    assert transport.requests_seen == []


# --- historical ---------------------------------------------------------------------------------------------


def test_daily_history_maps_every_recorded_bar() -> None:
    bars = raw(DAILY_2015)
    provider, transport = tiingo(rec(DAILY_2015), now=at("2015-01-05T23:00:00+00:00"))

    history = provider.get_historical("GOOGL", Period.MO1, Interval.D1, timeout_seconds=2)

    assert history.symbol == "GOOGL"
    assert (history.period, history.interval) == (Period.MO1, Interval.D1)
    assert [b.close for b in history.bars] == [b["close"] for b in bars]
    assert [b.open for b in history.bars] == [b["open"] for b in bars]
    assert [b.high for b in history.bars] == [b["high"] for b in bars]
    assert [b.low for b in history.bars] == [b["low"] for b in bars]
    assert [b.adj_close for b in history.bars] == [b["adjClose"] for b in bars]
    assert [b.volume for b in history.bars] == [b["volume"] for b in bars]
    # Daily bars are stamped at their session's open: 09:30 New York (EST) = 14:30 UTC.
    assert [b.timestamp for b in history.bars] == [
        at("2015-01-02T14:30:00+00:00"),
        at("2015-01-05T14:30:00+00:00"),
    ]
    assert history.as_of == history.bars[-1].timestamp
    path, query = sent(transport)
    assert path == "/tiingo/daily/GOOGL/prices"
    assert query == {"startDate": ["2014-12-05"], "endDate": ["2015-01-05"], "resampleFreq": ["daily"]}
    assert_token_only_in_header(transport)


def test_weekly_history_is_stamped_at_each_weeks_start_with_values_unchanged() -> None:
    bars = raw(WEEKLY_2018)  # Tiingo dates weekly bars by their Friday: 2018-01-05, -12, -19
    provider, transport = tiingo(rec(WEEKLY_2018), now=at("2018-01-20T15:00:00+00:00"))

    history = provider.get_historical("GOOGL", Period.MO1, Interval.WK1, timeout_seconds=2)

    assert [b.close for b in history.bars] == [b["close"] for b in bars]
    assert [b.volume for b in history.bars] == [b["volume"] for b in bars]
    assert [b.timestamp for b in history.bars] == [
        at("2018-01-01T14:30:00+00:00"),
        at("2018-01-08T14:30:00+00:00"),
        at("2018-01-15T14:30:00+00:00"),
    ]
    _, query = sent(transport)
    assert query["resampleFreq"] == ["weekly"]
    assert query["startDate"] == ["2017-12-20"]


def test_monthly_bars_are_stamped_at_the_months_first_weekday() -> None:
    # EDITED RECORDING: one bar of the 2015 recording re-dated to a month end (2018-09-28, a Friday);
    # 2018-09-01 was a Saturday, so the month opened on Monday 2018-09-03 (09:30 EDT = 13:30 UTC).
    bar = dict(raw(DAILY_2015)[0], date="2018-09-28T00:00:00.000Z")
    history = parse_historical_response([bar], "tiingo", "GOOGL", Period.Y1, Interval.MO1)
    assert history.bars[0].timestamp == at("2018-09-03T13:30:00+00:00")
    request = build_historical_request("GOOGL", Period.Y1, Interval.MO1, today=date(2018, 10, 31))
    assert request.params["resampleFreq"] == "monthly"
    assert request.params["startDate"] == "2017-10-31"


def test_one_day_period_keeps_the_last_session_and_reads_plus_offset_dates() -> None:
    provider, transport = tiingo(rec(DAILY_2015), now=at("2015-01-05T23:00:00+00:00"))
    history = provider.get_historical("GOOGL", Period.D1, Interval.D1, timeout_seconds=2)
    assert [b.close for b in history.bars] == [raw(DAILY_2015)[-1]["close"]]
    _, query = sent(transport)
    assert query["startDate"] == ["2014-12-26"]  # a window sure to hold the last sessions

    provider, _ = tiingo(rec(DAILY_LATEST), now=at("2018-04-13T02:42:05+00:00"))
    history = provider.get_historical("GOOGL", Period.D5, Interval.D1, timeout_seconds=2)
    assert history.bars[0].timestamp == at("2018-04-12T13:30:00+00:00")  # "+00:00" date, EDT open


def test_intraday_history_comes_from_iex_without_volume() -> None:
    bars = raw(IEX_30MIN)
    provider, transport = tiingo(rec(IEX_30MIN), now=at("2018-01-02T23:00:00+00:00"))

    history = provider.get_historical("GOOGL", Period.D1, Interval.M30, timeout_seconds=2)

    assert len(history.bars) == len(bars)
    assert [b.timestamp for b in history.bars] == [at(b["date"].replace("Z", "+00:00")) for b in bars]
    assert [b.close for b in history.bars] == [b["close"] for b in bars]
    assert [(b.open, b.high, b.low) for b in history.bars] == [(b["open"], b["high"], b["low"]) for b in bars]
    assert all(b.volume is None and b.adj_close is None for b in history.bars)
    assert history.as_of == at(bars[-1]["date"].replace("Z", "+00:00"))
    path, query = sent(transport)
    assert path == "/iex/GOOGL/prices"
    assert query == {"startDate": ["2017-12-23"], "endDate": ["2018-01-02"], "resampleFreq": ["30min"]}
    assert_token_only_in_header(transport)


@pytest.mark.parametrize(
    ("interval", "frequency"),
    [(Interval.M1, "1min"), (Interval.M5, "5min"), (Interval.M15, "15min"), (Interval.H1, "1hour")],
)
def test_intraday_frequencies_are_spelled_as_tiingo_documents(interval: Interval, frequency: str) -> None:
    request = build_historical_request("GOOGL", Period.D5, interval, today=date(2018, 1, 2))
    assert request.url == f"{TIINGO_BASE_URL}/iex/GOOGL/prices"
    assert request.params["resampleFreq"] == frequency


@pytest.mark.parametrize(
    ("period", "interval"), [(Period.Y1, Interval.M1), (Period.MO3, Interval.M5), (Period.MAX, Interval.H1)]
)
def test_intraday_ranges_past_the_iex_window_are_unsupported_without_a_request(
    period: Period, interval: Interval
) -> None:
    provider, transport = tiingo(rec(IEX_30MIN))
    with pytest.raises(ProviderUnsupported) as caught:
        provider.get_historical("GOOGL", period, interval, timeout_seconds=2)
    assert caught.value.provider == "tiingo"
    assert not caught.value.counts_as_failure
    assert transport.requests_seen == []


def test_history_for_an_unknown_ticker_is_symbol_not_found() -> None:
    provider, _ = tiingo(UNKNOWN_TICKER_404)
    with pytest.raises(ProviderSymbolNotFound, match="not found"):
        provider.get_historical("NOPE", Period.MO1, Interval.D1, timeout_seconds=2)


def test_history_with_no_bars_is_no_data() -> None:
    provider, _ = tiingo(body([]))
    with pytest.raises(ProviderNoData):
        provider.get_historical("GOOGL", Period.MO1, Interval.D1, timeout_seconds=2)


def test_bars_with_a_null_close_are_dropped() -> None:
    payload = copy.deepcopy(raw(DAILY_2015))
    payload[0]["close"] = None  # EDITED RECORDING: first bar's close nulled
    provider, _ = tiingo(body(payload))
    history = provider.get_historical("GOOGL", Period.MO1, Interval.D1, timeout_seconds=2)
    assert [b.close for b in history.bars] == [payload[1]["close"]]


def test_index_history_is_unsupported_not_unknown() -> None:
    provider, transport = tiingo(rec(DAILY_2015))
    with pytest.raises(ProviderUnsupported):
        provider.get_historical("^GSPC", Period.MO1, Interval.D1, timeout_seconds=2)
    assert transport.requests_seen == []


# --- profile ------------------------------------------------------------------------------------------------


def test_profile_maps_the_daily_meta() -> None:
    meta = raw(META)
    provider, transport = tiingo(rec(META))

    profile = provider.get_profile("GOOGL", timeout_seconds=2)

    assert profile.symbol == meta["ticker"] == "GOOGL"
    assert profile.name == meta["name"]
    assert profile.exchange == meta["exchangeCode"] == "NASDAQ"
    assert profile.description == meta["description"]
    assert profile.as_of == at("2017-10-06T20:00:00+00:00")  # endDate at the 16:00 EDT close
    path, query = sent(transport)
    assert (path, query) == ("/tiingo/daily/GOOGL", {})
    assert_token_only_in_header(transport)


def test_profile_for_an_unknown_ticker_is_symbol_not_found() -> None:
    provider, _ = tiingo(UNKNOWN_TICKER_404)
    with pytest.raises(ProviderSymbolNotFound):
        provider.get_profile("NOPE", timeout_seconds=2)


# --- news -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [NEWS, NEWS_OLDER])
def test_news_maps_the_recorded_articles(name: str) -> None:
    item = raw(name)[0]
    provider, transport = tiingo(rec(name))

    articles = provider.get_news("AAPL", 1, timeout_seconds=2)

    assert len(articles) == 1
    article = articles[0]
    assert article.title == item["title"]
    assert article.url == item["url"]
    assert article.publisher == item["source"]
    assert article.summary == item["description"]
    assert article.published_at == at(item["publishedDate"].replace("Z", "+00:00"))
    assert article.symbols == [t.upper() for t in item["tickers"]]
    assert article.sentiment_score is None  # Tiingo news carries no sentiment
    path, query = sent(transport)
    assert path == "/tiingo/news"
    assert query == {"tickers": ["aapl"], "limit": ["1"], "sortBy": ["publishedDate"]}
    assert_token_only_in_header(transport)


def test_news_description_may_be_null() -> None:
    payload = copy.deepcopy(raw(NEWS))
    payload[0]["description"] = None  # EDITED RECORDING: Tiingo sends null descriptions (fixtures README)
    provider, _ = tiingo(body(payload))
    assert provider.get_news("AAPL", 5, timeout_seconds=2)[0].summary is None


def test_news_without_permission_is_an_auth_error() -> None:
    # Genuine recording: HTTP 403 {"detail": "You do not have permission to access the News API"}.
    provider, _ = tiingo(rec(NEWS_403))
    with pytest.raises(ProviderAuthError, match="permission to access the News API") as caught:
        provider.get_news("AAPL", 5, timeout_seconds=2)
    assert not caught.value.retryable


# --- search ---------------------------------------------------------------------------------------------


def test_search_maps_the_documented_fields_and_leaves_out_inactive_tickers() -> None:
    provider, transport = tiingo(body(SEARCH_BODY))  # NOT A RECORDING (see SEARCH_BODY)

    results = provider.search("apple", 10, timeout_seconds=2)

    assert [r.symbol for r in results] == ["AAPL", "APLE", "XLK"]
    assert results[0].name == "Apple Inc"
    assert [r.asset_type for r in results] == ["equity", "equity", "etf"]
    path, query = sent(transport)
    assert path == "/tiingo/utilities/search"
    assert query == {"query": ["apple"], "limit": ["10"]}
    assert_token_only_in_header(transport)


def test_search_keeps_at_most_limit_results() -> None:
    provider, _ = tiingo(body(SEARCH_BODY))  # NOT A RECORDING
    assert len(provider.search("apple", 1, timeout_seconds=2)) == 1


# --- failures injected at the HTTP layer -----------------------------------------------------------------

_DAILY_BYTES = (FIXTURES / f"{DAILY_2015}.json").read_bytes()
HALF_RECORDING = _DAILY_BYTES[: len(_DAILY_BYTES) // 2]  # truncated JSON: a genuine recording cut in half


@pytest.mark.parametrize(
    ("answer", "error", "fragment"),
    [
        (CannedResponse(500, b"Internal Server Error", "text/plain"), ProviderUnavailable, "HTTP 500"),
        (CannedResponse(503, b"<html><body>503</body></html>", "text/html"), ProviderUnavailable, "HTTP 503"),
        (CannedResponse(200, b"<html><body>maintenance</body></html>", "text/html"), ProviderParseError, "HTML"),
        (CannedResponse(404, b"<html><body>Not Found</body></html>", "text/html"), ProviderParseError, "HTML"),
        (CannedResponse(200, HALF_RECORDING), ProviderParseError, "not valid JSON"),
        (CannedResponse(200, b"date,open,high\n2015-01-02,1,2", "text/csv"), ProviderParseError, "not valid JSON"),
        (CannedResponse(200, b"ok", "text/plain"), ProviderParseError, "not valid JSON"),
        (BAD_TOKEN_401, ProviderAuthError, "HTTP 401"),
        (rec(NEWS_403), ProviderAuthError, "HTTP 403"),
        (body({"detail": "Error: something else"}), ProviderParseError, "something else"),
        (body({"prices": []}), ProviderParseError, "expected a JSON array"),
        (body([1, 2]), ProviderParseError, "not a JSON object"),
        (body([{"date": "yesterday", "close": 1.0}]), ProviderParseError, "unreadable date"),
        (CannedResponse(404, json_body({"message": "no route"})), ProviderParseError, "404"),
    ],
)
def test_vendor_failures_become_typed_errors(answer: CannedResponse, error: type[ProviderError], fragment: str) -> None:
    provider, _ = tiingo(answer)
    with pytest.raises(error) as caught:
        provider.get_historical("GOOGL", Period.MO1, Interval.D1, timeout_seconds=2)
    assert fragment in str(caught.value)
    assert caught.value.provider == "tiingo"


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retryable(status: int) -> None:
    provider, _ = tiingo(CannedResponse(status, b"busy", "text/plain"))
    with pytest.raises(ProviderUnavailable) as caught:
        provider.get_quotes(["GOOGL"], timeout_seconds=2)
    assert caught.value.retryable


def test_rate_limit_carries_retry_after() -> None:
    answer = CannedResponse(429, json_body({"detail": "throttled"}), headers={"Retry-After": "30"})
    provider, _ = tiingo(answer)
    with pytest.raises(ProviderRateLimited) as caught:
        provider.get_quotes(["GOOGL"], timeout_seconds=2)
    assert caught.value.retry_after_seconds == 30


@pytest.mark.parametrize(
    ("exception", "error"),
    [
        (requests.ConnectTimeout("connect timed out"), ProviderTimeout),
        (requests.ReadTimeout("read timed out"), ProviderTimeout),
        (requests.ConnectionError("connection refused"), ProviderUnavailable),
    ],
)
def test_network_failures_become_typed_errors(exception: Exception, error: type[ProviderError]) -> None:
    provider, _ = tiingo(exception)
    with pytest.raises(error) as caught:
        provider.get_profile("GOOGL", timeout_seconds=2)
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
        # requests' own wording: the URL is in the message (Tiingo's URLs never hold the key).
        requests.ReadTimeout("HTTPSConnectionPool(host='api.tiingo.com', port=443): Read timed out. (read timeout=2)"),
        requests.ConnectTimeout("HTTPSConnectionPool(host='api.tiingo.com', port=443): Max retries exceeded"),
        requests.ConnectionError("('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))"),
        BAD_TOKEN_401,
        CannedResponse(500, b"boom", "text/plain"),
        CannedResponse(429, b"slow down", "text/plain", headers={"Retry-After": "5"}),
        # NOT A RECORDING: hypothetical error bodies that echo the token back (scrubbed by the adapter).
        CannedResponse(401, json_body({"detail": f"Invalid token {API_KEY}"})),
        CannedResponse(403, json_body({"detail": f"Token {API_KEY} has no permission"})),
        CannedResponse(400, json_body({"detail": f"bad request for token {API_KEY}"})),
    ],
)
def test_the_key_is_in_no_error_message(answer: CannedResponse | Exception) -> None:
    provider, transport = tiingo(answer)
    with pytest.raises(ProviderError) as caught:
        provider.get_historical("GOOGL", Period.MO1, Interval.D1, timeout_seconds=2)
    for linked in _chain(caught.value):
        assert API_KEY not in str(linked)
        assert API_KEY not in repr(linked)
    assert all(API_KEY not in url for url in transport.requests_seen)
    assert transport.headers_seen[0]["Authorization"] == f"Token {API_KEY}"  # it was sent, in the header


def test_built_requests_and_the_provider_never_show_the_key() -> None:
    provider, _ = tiingo()
    request = build_quote_request("GOOGL", today=date(2015, 1, 6))
    assert isinstance(request, ProviderRequest)
    assert "Authorization" not in (request.headers or {})
    assert API_KEY not in repr(provider)


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="API key"):
        TiingoProvider(requests.Session(), api_key="")


# --- a real local HTTP server ----------------------------------------------------------------------------


class _RecordingHandler(BaseHTTPRequestHandler):
    body: ClassVar[bytes] = (FIXTURES / f"{DAILY_2015}.json").read_bytes()
    delay_seconds: ClassVar[float] = 0.0
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002
        return None


@pytest.fixture
def local_tiingo() -> Iterator[tuple[str, type[_RecordingHandler]]]:
    handler = type("Handler", (_RecordingHandler,), {"seen": [], "delay_seconds": 0.0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_over_real_http_the_recording_maps_and_the_key_goes_in_the_header(
    local_tiingo: tuple[str, type[_RecordingHandler]],
) -> None:
    base_url, handler = local_tiingo
    provider = TiingoProvider(
        build_session(timeout_cap_seconds=2),
        api_key=API_KEY,
        base_url=base_url,
        clock=lambda: at("2015-01-06T15:00:00+00:00"),
    )
    quote = provider.get_quotes(["GOOGL"], timeout_seconds=2)["GOOGL"]
    assert quote.price == raw(DAILY_2015)[-1]["close"]
    [(path, authorization)] = handler.seen
    assert path == "/tiingo/daily/GOOGL/prices?startDate=2014-12-23"
    assert authorization == f"Token {API_KEY}"


def test_over_real_http_a_slow_answer_is_a_timeout(local_tiingo: tuple[str, type[_RecordingHandler]]) -> None:
    base_url, handler = local_tiingo
    handler.delay_seconds = 1.5
    provider = TiingoProvider(build_session(timeout_cap_seconds=2), api_key=API_KEY, base_url=base_url)
    started = time.monotonic()
    with pytest.raises(ProviderTimeout) as caught:
        provider.get_quotes(["GOOGL"], timeout_seconds=0.3)
    assert time.monotonic() - started < 1.4
    assert API_KEY not in str(caught.value)
