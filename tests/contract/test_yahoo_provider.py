"""YahooProvider (yfinance underneath) against genuine recorded Yahoo responses, answered at the HTTP
layer of the session yfinance really uses; failures are injected there too, never by patching the adapter."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from chalicelib.adapters.http import TimeoutCappedAdapter
from chalicelib.errors import ProviderParseError, ProviderRateLimited, ProviderTimeout, ProviderUnavailable
from tests.fakes.yahoo_http import (
    QUOTE_PREFIX,
    CannedResponse,
    recorded,
    recorded_json,
    yahoo_provider,
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
