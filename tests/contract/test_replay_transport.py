"""The replay source serves genuine recordings and real daily prices, and says so."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.yahoo import YahooProvider
from infra.local.replay.transport import DAILY_DIR, YahooReplayTransport, yahoo_replay_data
from tests.fakes.yahoo_http import recorded_json

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"


def _get(symbols: str) -> requests.Response:
    session = build_session(timeout_cap_seconds=1, transport=YahooReplayTransport())
    return session.get(QUOTE_URL, params={"symbols": symbols})


def test_recorded_symbol_is_served_verbatim() -> None:
    body = _get("AAPL").json()
    assert body["quoteResponse"]["result"] == recorded_json("quote_AAPL")["quoteResponse"]["result"]


def test_batch_is_the_recorded_items_side_by_side() -> None:
    result = _get("AAPL,BABA").json()["quoteResponse"]["result"]
    assert [item["symbol"] for item in result] == ["AAPL", "BABA"]
    assert result[1] == recorded_json("quote_AAPL_BABA_batch")["quoteResponse"]["result"][1]


def test_unrecorded_symbol_with_a_daily_series_is_derived_from_its_last_two_real_bars() -> None:
    with (DAILY_DIR / "NVDA_daily_2021-02-01_2022-01-31.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    last, previous = rows[-1], rows[-2]
    item = _get("NVDA").json()["quoteResponse"]["result"][0]
    assert item["regularMarketPrice"] == float(last["Close"])
    assert item["regularMarketPreviousClose"] == float(previous["Close"])
    assert item["regularMarketVolume"] == int(last["Volume"])
    assert item["regularMarketChange"] == float(last["Close"]) - float(previous["Close"])


def test_index_series_is_quoted_under_its_caret_symbol() -> None:
    item = _get("^GSPC").json()["quoteResponse"]["result"][0]
    assert item["symbol"] == "^GSPC"
    assert item["quoteType"] == "INDEX"


def test_unknown_symbol_is_answered_like_yahoos_empty_result() -> None:
    response = _get("ZZZZZ")
    assert response.status_code == 200
    assert response.json() == recorded_json("quote_SIX_unknown_symbol_empty")


def test_real_company_without_recorded_prices_is_an_explicit_error_not_a_made_up_price() -> None:
    assert "JPM" in yahoo_replay_data().constituents
    response = _get("JPM")
    assert response.status_code == 404
    assert "replay has no recorded data for JPM" in response.text


def test_anything_unrecorded_is_a_404_naming_the_url() -> None:
    session = build_session(timeout_cap_seconds=1, transport=YahooReplayTransport())
    response = session.get("https://query2.finance.yahoo.com/v10/finance/quoteSummary/AAPL")
    assert response.status_code == 404
    assert "quoteSummary/AAPL" in json.loads(response.text)["error"]


def test_provider_over_replay_labels_its_data_replay(tmp_path: Path) -> None:
    session = build_session(timeout_cap_seconds=1, transport=YahooReplayTransport())
    provider = YahooProvider(session, cache_dir=str(tmp_path), source_label="replay")
    quotes = provider.get_quotes(["AAPL", "NVDA"], timeout_seconds=2)
    assert provider.name == "replay"
    assert set(quotes) == {"AAPL", "NVDA"}
