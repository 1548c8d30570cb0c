"""The replay day: with REPLAY_STEP_SECONDS set, the whole universe steps one trading day per step from
REPLAY_START_DAY (default: the 130th day) to the last day, then wraps back to the start day; unset, the
replay stays on the start day."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.yahoo import YahooProvider
from infra.local.replay.transport import (
    DEFAULT_START_DAY,
    ReplayCalendar,
    ReplayClock,
    YahooReplayTransport,
    replay_calendar_from_env,
    replay_clock_from_env,
    replay_start_index,
)
from infra.local.replay.universe import load_universe
from tests.fakes import replay_universe as data
from tests.fakes.yahoo_http import recorded_json

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
EPOCH = 1_700_000_000.0
STEP = 60.0
DAYS = len(data.trading_days())
START = data.DEFAULT_DAY_INDEX


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


def calendar(start: int = START) -> ReplayCalendar:
    return ReplayCalendar(load_universe().days, start)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(EPOCH)


@pytest.fixture
def stepping(clock: FakeClock) -> YahooReplayTransport:
    return YahooReplayTransport(clock=ReplayClock(step_seconds=STEP, epoch=EPOCH, now=clock), calendar=calendar())


def assert_is_day(item: dict[str, Any], symbol: str, day_index: int) -> None:
    """The item is ``symbol``'s CSV row of ``day_index``, with the previous row's close."""
    bar, previous = data.row(symbol, day_index), data.row(symbol, day_index - 1)
    assert bar is not None
    assert previous is not None
    assert item["symbol"] == symbol
    assert item["replayBarDate"] == bar["date"] == data.trading_days()[day_index]
    assert item["regularMarketPrice"] == float(bar["close"])
    assert item["regularMarketPreviousClose"] == float(previous["close"])
    assert item["regularMarketChange"] == float(bar["close"]) - float(previous["close"])
    assert item["regularMarketChangePercent"] == pytest.approx(data.change_percent(symbol, day_index))
    assert item["regularMarketOpen"] == float(bar["open"])
    assert item["regularMarketDayHigh"] == float(bar["high"])
    assert item["regularMarketDayLow"] == float(bar["low"])
    assert item["regularMarketVolume"] == int(bar["volume"])


# --- The calendar. ---


def test_the_default_start_is_the_130th_trading_day() -> None:
    assert DEFAULT_START_DAY == 130
    assert replay_start_index(None, load_universe().days) == START
    assert replay_calendar_from_env({}).start == START
    assert calendar().day_index(None) == START  # frozen: the start day


def test_steps_walk_from_the_start_day_to_the_last_and_wrap_back_to_the_start() -> None:
    walk = calendar()
    span = DAYS - START
    assert [walk.day_index(step) for step in range(3)] == [START, START + 1, START + 2]
    assert walk.day_index(span - 1) == DAYS - 1  # the last day
    assert walk.day_index(span) == START  # wraps back to the start, not to day 0
    assert walk.day_index(span + 2) == START + 2
    assert walk.day_index(7 * span + 5) == START + 5
    assert {walk.day_index(step) for step in range(3 * span)} == set(range(START, DAYS))


def test_a_start_on_the_last_day_stays_there() -> None:
    last = calendar(DAYS - 1)
    assert {last.day_index(step) for step in range(5)} == {DAYS - 1}


@pytest.mark.parametrize(
    ("raw", "index"),
    [("1", 0), ("130", 129), (str(DAYS), DAYS - 1), (" 42 ", 41), ("", START)],
)
def test_start_day_as_a_trading_day_number(raw: str, index: int) -> None:
    assert replay_start_index(raw, load_universe().days) == index


def test_start_day_as_a_date_of_the_window() -> None:
    days = data.trading_days()
    for index in (0, 100, DAYS - 1):
        assert replay_start_index(days[index], load_universe().days) == index
    assert replay_calendar_from_env({"REPLAY_START_DAY": days[200]}).start == 200


@pytest.mark.parametrize("raw", ["0", str(DAYS + 1), "-3", "soon", "2017-01-28", "2019-01-02", "2017-13-01", "1.5"])
def test_a_bad_start_day_names_the_variable(raw: str) -> None:
    # 2017-01-28 is a Saturday; 2019-01-02 lies after the window.
    with pytest.raises(ValueError, match="REPLAY_START_DAY"):
        replay_start_index(raw, load_universe().days)


def test_the_transport_reads_the_start_day_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLAY_STEP_SECONDS", raising=False)
    monkeypatch.setenv("REPLAY_START_DAY", "200")
    transport = YahooReplayTransport()
    assert transport.replay_day_index() == 199
    assert transport.replay_day().isoformat() == data.trading_days()[199]
    assert_is_day(quote_item(transport, "MSFT"), "MSFT", 199)
    monkeypatch.setenv("REPLAY_START_DAY", "someday")
    with pytest.raises(ValueError, match="REPLAY_START_DAY"):
        YahooReplayTransport()


# --- Stepping quotes. ---


@pytest.mark.parametrize("symbol", ["AAPL", "BRK-B", "SPY", "XLK", "^GSPC", "^VIX"])
def test_consecutive_steps_are_consecutive_trading_days(
    symbol: str, clock: FakeClock, stepping: YahooReplayTransport
) -> None:
    for step in range(4):
        clock.at_step(step)
        item = quote_item(stepping, symbol)
        assert_is_day(item, symbol, START + step)
        assert stepping.replay_day_index() == START + step
        assert item["regularMarketTime"] == int(EPOCH + step * STEP)  # the step's wall-clock time
        assert item["replayStep"] == step


def test_a_step_lasts_step_seconds_from_the_epoch(clock: FakeClock, stepping: YahooReplayTransport) -> None:
    clock.now = EPOCH + STEP - 0.001
    assert_is_day(quote_item(stepping, "NVDA"), "NVDA", START)
    clock.now = EPOCH + STEP
    assert_is_day(quote_item(stepping, "NVDA"), "NVDA", START + 1)
    clock.now = EPOCH - 1000  # before the epoch: step 0
    assert_is_day(quote_item(stepping, "NVDA"), "NVDA", START)


def test_the_universe_wraps_back_to_the_start_day(clock: FakeClock, stepping: YahooReplayTransport) -> None:
    span = DAYS - START
    clock.at_step(span - 1)
    assert_is_day(quote_item(stepping, "JPM"), "JPM", DAYS - 1)
    assert stepping.replay_day().isoformat() == data.trading_days()[-1]
    clock.at_step(span)
    assert_is_day(quote_item(stepping, "JPM"), "JPM", START)
    clock.at_step(3 * span + 2)
    assert_is_day(quote_item(stepping, "JPM"), "JPM", START + 2)


def test_one_batch_answer_is_all_of_one_day(clock: FakeClock, stepping: YahooReplayTransport) -> None:
    clock.at_step(7)
    symbols = ["AAPL", "MSFT", "^GSPC", "QQQ", "XLRE", "GOOGL"]
    items = {item["symbol"]: item for item in quote_items(stepping, ",".join(symbols))}
    assert set(items) == set(symbols)
    for symbol in symbols:
        assert_is_day(items[symbol], symbol, START + 7)
        assert items[symbol]["regularMarketTime"] == int(EPOCH + 7 * STEP)


def test_the_provider_maps_a_stepped_quote_with_the_steps_time(
    tmp_path: Path, clock: FakeClock, stepping: YahooReplayTransport
) -> None:
    session = build_session(timeout_cap_seconds=1, transport=stepping)
    provider = YahooProvider(session, cache_dir=str(tmp_path), source_label="replay")
    clock.at_step(3)
    first = provider.get_quotes(["MSFT"], timeout_seconds=2)["MSFT"]
    clock.at_step(4)
    second = provider.get_quotes(["MSFT"], timeout_seconds=2)["MSFT"]
    assert (first.price, second.price) == (data.close("MSFT", START + 3), data.close("MSFT", START + 4))
    assert first.as_of == datetime.fromtimestamp(EPOCH + 3 * STEP, UTC)
    assert second.as_of == datetime.fromtimestamp(EPOCH + 4 * STEP, UTC)
    assert provider.name == "replay"


# --- Configuration and the frozen default. ---


def test_unset_or_zero_is_the_frozen_replay_on_the_start_day(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPLAY_STEP_SECONDS", raising=False)
    monkeypatch.delenv("REPLAY_EPOCH", raising=False)
    monkeypatch.delenv("REPLAY_START_DAY", raising=False)
    frozen = YahooReplayTransport()
    assert frozen.clock is None
    item = quote_item(frozen, "AAPL")
    assert_is_day(item, "AAPL", START)
    # Frozen, the quote's time is the replay day's 16:00 New York close.
    close_time = datetime.fromtimestamp(item["regularMarketTime"], UTC)
    assert close_time.date().isoformat() == data.trading_days()[START]
    assert close_time.hour in (20, 21)  # 16:00 EDT / EST
    assert "replayStep" not in item
    assert quote_item(frozen, "AAPL") == item
    monkeypatch.setenv("REPLAY_STEP_SECONDS", "0")
    assert YahooReplayTransport().clock is None
    assert YahooReplayTransport(clock=None).clock is None


def test_the_environment_sets_a_shared_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    # As `make run` sets it: the epoch five and a half steps ago → step 5 in every worker.
    monkeypatch.setenv("REPLAY_STEP_SECONDS", "60")
    monkeypatch.setenv("REPLAY_EPOCH", f"{time.time() - 5.5 * 60:.3f}")
    monkeypatch.delenv("REPLAY_START_DAY", raising=False)
    workers = [YahooReplayTransport(), YahooReplayTransport()]
    for transport in workers:
        assert transport.clock is not None
        assert transport.replay_day_index() == START + 5
        assert_is_day(quote_item(transport, "SPY"), "SPY", START + 5)


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


def test_unknown_symbols_are_unaffected_by_the_clock(clock: FakeClock, stepping: YahooReplayTransport) -> None:
    session = build_session(timeout_cap_seconds=1, transport=stepping)
    for step in (0, 50):
        clock.at_step(step)
        response: requests.Response = session.get(QUOTE_URL, params={"symbols": "ZZZZZ"})
        assert response.json() == recorded_json("quote_SIX_unknown_symbol_empty")
