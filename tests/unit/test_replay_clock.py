"""The replay clock: with REPLAY_STEP_SECONDS set, quotes step through the real daily series, one bar
per step, from a shared REPLAY_EPOCH; unset, the replay stays frozen."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.yahoo import YahooProvider
from infra.local.replay.transport import DAILY_DIR, ReplayClock, YahooReplayTransport, replay_clock_from_env
from tests.fakes.yahoo_http import recorded_json

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
EPOCH = 1_700_000_000.0
STEP = 60.0
# The quoted symbol → its CSV, read here independently of the transport.
SERIES = {
    "AAPL": "AAPL_daily_2020-08-31_2020-11-06.csv",
    "GOOG": "GOOG_daily_2004-08-19_2013-03-01.csv",
    "MSFT": "MSFT_daily_2021-02-01_2022-01-31.csv",
    "NVDA": "NVDA_daily_2021-02-01_2022-01-31.csv",
    "SPY": "SPY_daily_2021-10-15_2022-10-14.csv",
    "^GSPC": "GSPC_daily_2001-01-02_2010-12-31.csv",
}


def csv_rows(symbol: str) -> list[dict[str, str]]:
    """The series' rows, oldest first; the date column is named "Date" or left unnamed."""
    with (DAILY_DIR / SERIES[symbol]).open(newline="") as handle:
        rows = [{("Date" if key == "" else key): value for key, value in row.items()} for row in csv.DictReader(handle)]
    return sorted(rows, key=lambda row: row["Date"])


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def at_step(self, step: int) -> None:
        self.now = EPOCH + step * STEP + STEP / 2  # mid-step: no boundary ambiguity


def quote_items(transport: YahooReplayTransport, symbols: str) -> list[dict[str, Any]]:
    session = build_session(timeout_cap_seconds=1, transport=transport)
    response = session.get(QUOTE_URL, params={"symbols": symbols})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["quoteResponse"]["result"]
    return items


def quote_item(transport: YahooReplayTransport, symbol: str) -> dict[str, Any]:
    (item,) = quote_items(transport, symbol)
    return item


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(EPOCH)


@pytest.fixture
def stepping(clock: FakeClock) -> YahooReplayTransport:
    return YahooReplayTransport(clock=ReplayClock(step_seconds=STEP, epoch=EPOCH, now=clock))


def assert_is_bar(item: dict[str, Any], rows: list[dict[str, str]], index: int) -> None:
    bar, previous = rows[index], rows[index - 1]
    assert item["regularMarketPrice"] == float(bar["Close"])
    assert item["regularMarketPreviousClose"] == float(previous["Close"])
    assert item["regularMarketChange"] == float(bar["Close"]) - float(previous["Close"])
    assert item["regularMarketChangePercent"] == pytest.approx(
        (float(bar["Close"]) - float(previous["Close"])) / float(previous["Close"]) * 100
    )
    assert item["regularMarketOpen"] == float(bar["Open"])
    assert item["regularMarketDayHigh"] == float(bar["High"])
    assert item["regularMarketDayLow"] == float(bar["Low"])
    assert item["regularMarketVolume"] == int(float(bar["Volume"]))
    assert item["replayBarDate"] == bar["Date"]


@pytest.mark.parametrize("symbol", list(SERIES))
def test_consecutive_steps_are_consecutive_real_bars(
    symbol: str, clock: FakeClock, stepping: YahooReplayTransport
) -> None:
    rows = csv_rows(symbol)
    for step in range(4):
        clock.at_step(step)
        item = quote_item(stepping, symbol)
        assert item["symbol"] == symbol
        assert_is_bar(item, rows, step + 1)  # step 0 is bar 1: bar 0 has no real previous close
        assert item["regularMarketTime"] == int(EPOCH + step * STEP)  # the step's wall-clock time
        assert item["replayStep"] == step


def test_prices_change_between_steps(clock: FakeClock, stepping: YahooReplayTransport) -> None:
    prices = []
    for step in range(5):
        clock.at_step(step)
        prices.append(quote_item(stepping, "AAPL")["regularMarketPrice"])
    assert len(set(prices)) > 1
    assert prices == [float(row["Close"]) for row in csv_rows("AAPL")[1:6]]


def test_a_step_lasts_step_seconds_from_the_epoch(clock: FakeClock, stepping: YahooReplayTransport) -> None:
    rows = csv_rows("NVDA")
    clock.now = EPOCH + STEP - 0.001
    assert_is_bar(quote_item(stepping, "NVDA"), rows, 1)
    clock.now = EPOCH + STEP
    assert_is_bar(quote_item(stepping, "NVDA"), rows, 2)
    clock.now = EPOCH - 1000  # before the epoch: step 0
    assert_is_bar(quote_item(stepping, "NVDA"), rows, 1)


@pytest.mark.parametrize("symbol", ["AAPL", "SPY"])
def test_the_series_wraps_around_to_its_first_quotable_bar(
    symbol: str, clock: FakeClock, stepping: YahooReplayTransport
) -> None:
    rows = csv_rows(symbol)
    quotable = len(rows) - 1  # bars 1 … n-1
    clock.at_step(quotable - 1)
    assert_is_bar(quote_item(stepping, symbol), rows, len(rows) - 1)  # the last bar
    clock.at_step(quotable)
    assert_is_bar(quote_item(stepping, symbol), rows, 1)
    clock.at_step(quotable + 2)
    assert_is_bar(quote_item(stepping, symbol), rows, 3)
    clock.at_step(5 * quotable + 1)
    assert_is_bar(quote_item(stepping, symbol), rows, 2)


def test_one_batch_answer_is_all_of_one_step(clock: FakeClock, stepping: YahooReplayTransport) -> None:
    clock.at_step(7)
    items = {item["symbol"]: item for item in quote_items(stepping, "AAPL,MSFT,^GSPC,QQQ,BABA")}
    for symbol in ("AAPL", "MSFT", "^GSPC"):
        assert_is_bar(items[symbol], csv_rows(symbol), 8)
        assert items[symbol]["regularMarketTime"] == int(EPOCH + 7 * STEP)
    # Symbols without a daily series keep their recorded items.
    assert items["QQQ"] == recorded_json("quote_QQQ")["quoteResponse"]["result"][0]
    assert items["BABA"] == recorded_json("quote_AAPL_BABA_batch")["quoteResponse"]["result"][1]


def test_recorded_symbols_keep_their_identity_fields_but_not_their_recorded_prices(
    clock: FakeClock, stepping: YahooReplayTransport
) -> None:
    recorded = recorded_json("quote_AAPL")["quoteResponse"]["result"][0]
    clock.at_step(0)
    item = quote_item(stepping, "AAPL")
    assert item["longName"] == recorded["longName"]
    assert item["exchange"] == recorded["exchange"]
    assert item["regularMarketPrice"] != recorded["regularMarketPrice"]
    assert "marketCap" not in item
    assert "fiftyTwoWeekHigh" not in item


def test_the_provider_maps_a_stepped_quote_with_the_steps_time(
    tmp_path: Path, clock: FakeClock, stepping: YahooReplayTransport
) -> None:
    session = build_session(timeout_cap_seconds=1, transport=stepping)
    provider = YahooProvider(session, cache_dir=str(tmp_path), source_label="replay")
    rows = csv_rows("MSFT")
    clock.at_step(3)
    first = provider.get_quotes(["MSFT"], timeout_seconds=2)["MSFT"]
    clock.at_step(4)
    second = provider.get_quotes(["MSFT"], timeout_seconds=2)["MSFT"]
    assert (first.price, second.price) == (float(rows[4]["Close"]), float(rows[5]["Close"]))
    assert first.as_of == datetime.fromtimestamp(EPOCH + 3 * STEP, UTC)
    assert second.as_of == datetime.fromtimestamp(EPOCH + 4 * STEP, UTC)
    assert provider.name == "replay"


# --- Configuration and the frozen default. ---


def test_unset_or_zero_is_the_frozen_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLAY_STEP_SECONDS", raising=False)
    monkeypatch.delenv("REPLAY_EPOCH", raising=False)
    frozen = YahooReplayTransport()
    assert frozen.clock is None
    assert quote_item(frozen, "AAPL") == recorded_json("quote_AAPL")["quoteResponse"]["result"][0]
    rows = csv_rows("NVDA")
    item = quote_item(frozen, "NVDA")
    assert item["regularMarketPrice"] == float(rows[-1]["Close"])
    assert item["regularMarketPreviousClose"] == float(rows[-2]["Close"])
    assert "replayBarDate" not in item
    assert quote_item(frozen, "NVDA") == item
    monkeypatch.setenv("REPLAY_STEP_SECONDS", "0")
    assert YahooReplayTransport().clock is None
    assert YahooReplayTransport(clock=None).clock is None


def test_the_environment_sets_a_shared_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    # As `make run` sets it: the epoch five and a half steps ago → step 5 in every worker.
    monkeypatch.setenv("REPLAY_STEP_SECONDS", "60")
    monkeypatch.setenv("REPLAY_EPOCH", f"{time.time() - 5.5 * 60:.3f}")
    workers = [YahooReplayTransport(), YahooReplayTransport()]
    rows = csv_rows("SPY")
    for transport in workers:
        assert transport.clock is not None
        assert_is_bar(quote_item(transport, "SPY"), rows, 6)


def test_without_an_epoch_the_transports_creation_is_the_origin() -> None:
    clock = replay_clock_from_env({"REPLAY_STEP_SECONDS": "2.5"}, created_at=EPOCH)
    assert clock == ReplayClock(step_seconds=2.5, epoch=EPOCH)
    assert replay_clock_from_env({"REPLAY_STEP_SECONDS": "60", "REPLAY_EPOCH": "1700000000"}) == ReplayClock(
        60.0, EPOCH
    )
    assert replay_clock_from_env({}) is None
    assert replay_clock_from_env({"REPLAY_STEP_SECONDS": " 0 "}) is None


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REPLAY_STEP_SECONDS": "-1"}, "REPLAY_STEP_SECONDS"),
        ({"REPLAY_STEP_SECONDS": "soon"}, "REPLAY_STEP_SECONDS"),
        ({"REPLAY_STEP_SECONDS": "inf"}, "REPLAY_STEP_SECONDS"),
        ({"REPLAY_STEP_SECONDS": "nan"}, "REPLAY_STEP_SECONDS"),
        ({"REPLAY_STEP_SECONDS": "60", "REPLAY_EPOCH": "yesterday"}, "REPLAY_EPOCH"),
        ({"REPLAY_STEP_SECONDS": "60", "REPLAY_EPOCH": "nan"}, "REPLAY_EPOCH"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ValueError, match=variable):
        replay_clock_from_env(env)


def test_unknown_symbols_are_unaffected_by_the_clock(stepping: YahooReplayTransport) -> None:
    session = build_session(timeout_cap_seconds=1, transport=stepping)
    response: requests.Response = session.get(QUOTE_URL, params={"symbols": "ZZZZZ"})
    assert response.json() == recorded_json("quote_SIX_unknown_symbol_empty")
