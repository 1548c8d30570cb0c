"""The replay source: the 505-symbol universe's real bars, every Yahoo endpoint answered for one replay
day, consistently, through the real Yahoo adapter. Expected values are read from the data files with
the csv module (tests/fakes/replay_universe.py), never from the code under test."""

from __future__ import annotations

import calendar
import csv
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.yahoo import YahooProvider
from chalicelib.errors import ProviderError, ProviderNoData, ProviderSymbolNotFound
from chalicelib.models.market import DataKind, HistoricalData, Interval, MoverType, Period
from infra.local.replay.transport import CONSTITUENTS_CSV, ReplayCalendar, YahooReplayTransport
from infra.local.replay.universe import load_universe
from tests.fakes import replay_universe as data
from tests.fakes.yahoo_http import recorded_json

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
CHART_URL = "https://query2.finance.yahoo.com/v8/finance/chart/"
SUMMARY_URL = "https://query2.finance.yahoo.com/v10/finance/quoteSummary/"
SCREENER_URL = "https://query2.finance.yahoo.com/v1/finance/screener/predefined/saved"
START = data.DEFAULT_DAY_INDEX
LAST = len(data.trading_days()) - 1


def transport_on(day_index: int = START) -> YahooReplayTransport:
    """A frozen replay on trading day ``day_index``."""
    return YahooReplayTransport(clock=None, calendar=ReplayCalendar(load_universe().days, day_index))


def session_on(day_index: int = START) -> requests.Session:
    return build_session(timeout_cap_seconds=1, transport=transport_on(day_index))


def provider_on(tmp_path: Path, day_index: int = START) -> YahooProvider:
    session = build_session(timeout_cap_seconds=1, transport=transport_on(day_index))
    return YahooProvider(
        session, cache_dir=str(tmp_path), source_label="replay", clock=lambda: datetime(2025, 2, 24, tzinfo=UTC)
    )


def quote_body(symbols: str, day_index: int = START) -> dict[str, Any]:
    response = session_on(day_index).get(QUOTE_URL, params={"symbols": symbols})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def constituent(listed_as: str) -> dict[str, str]:
    with CONSTITUENTS_CSV.open() as handle:
        return next(row for row in csv.DictReader(handle) if row["Symbol"] == listed_as)


def day_of(symbol: str, day_index: int) -> dict[str, str]:
    found = data.row(symbol, day_index)
    assert found is not None
    return found


# --- The universe. ---


def test_the_universe_is_every_symbol_of_the_files_on_their_260_days() -> None:
    universe = load_universe()
    assert [day.isoformat() for day in universe.days] == data.trading_days()
    assert len(universe.days) == 260
    assert sorted(universe.symbols) == sorted(data.rows_by_symbol())
    assert len(universe.stocks) == 505
    assert sorted(universe.stocks) == data.stocks()
    assert set(universe.indices) == {"^GSPC", "^DJI", "^IXIC", "^RUT", "^VIX"}
    assert len(universe.sector_etfs) == 10
    assert "XLC" not in universe
    assert set(universe.etfs) == set(data.FUND_FILES) - set(universe.indices)


def test_symbols_are_spelled_as_yahoo_spells_them() -> None:
    universe = load_universe()
    assert {"BRK-B", "BF-B", "^GSPC"} <= set(universe.symbols)
    assert not [symbol for symbol in universe.symbols if "." in symbol]


@pytest.mark.parametrize("symbol", ["AAPL", "BRK-B", "GOOGL", "FB", "XLRE", "^VIX", *data.LATE_LISTINGS])
def test_every_bar_is_the_csv_row(symbol: str) -> None:
    universe = load_universe()
    bars = universe.bars(symbol)
    assert len(bars) == len(universe.days)
    for index, bar in enumerate(bars):
        csv_row = data.row(symbol, index)
        if csv_row is None:
            assert bar is None
            continue
        assert bar is not None
        assert bar.day.isoformat() == csv_row["date"]
        assert bar.close == float(csv_row["close"])
        assert bar.volume == int(csv_row["volume"])
        for field in ("open", "high", "low"):
            assert getattr(bar, field) == (float(csv_row[field]) if csv_row[field] else None)
        assert universe.bar(symbol, index) == bar


def test_every_stock_parses_and_matches_its_row_counts() -> None:
    universe = load_universe()
    for symbol in universe.stocks:
        listed = [bar for bar in universe.bars(symbol) if bar is not None]
        assert len(listed) == len(data.rows_by_symbol()[symbol])


@pytest.mark.parametrize("symbol", data.LATE_LISTINGS)
def test_late_listings_are_listed_from_their_first_row(symbol: str) -> None:
    universe = load_universe()
    first = data.first_day_index(symbol)
    assert first > 0
    assert universe.first_index(symbol) == first
    assert not universe.listed_on(symbol, first - 1)
    assert universe.listed_on(symbol, first)
    assert universe.listed_on(symbol, LAST)
    assert symbol not in universe.trading_on(first - 1)
    assert symbol in universe.trading_on(first)


@pytest.mark.parametrize("day_index", [0, 44, START, LAST])
def test_trading_on_is_every_symbol_with_a_row_that_day(day_index: int) -> None:
    universe = load_universe()
    day = data.trading_days()[day_index]
    expected = {symbol for symbol, rows in data.rows_by_symbol().items() if day in rows}
    assert set(universe.trading_on(day_index)) == expected
    assert set(universe.stocks_trading_on(day_index)) == expected & set(data.stocks())


def test_the_bhf_gap_keeps_the_close_and_leaves_the_rest_out(tmp_path: Path) -> None:
    (gap_day,) = [day for day, row in data.rows_by_symbol()["BHF"].items() if not row["open"]]
    index = data.trading_days().index(gap_day)
    csv_row = day_of("BHF", index)
    bar = load_universe().bar("BHF", index)
    assert bar is not None
    assert (bar.open, bar.high, bar.low) == (None, None, None)
    assert bar.close == float(csv_row["close"])
    item = quote_body("BHF", index)["quoteResponse"]["result"][0]
    assert item["regularMarketPrice"] == float(csv_row["close"])
    assert not {"regularMarketOpen", "regularMarketDayHigh", "regularMarketDayLow"} & set(item)
    quote = provider_on(tmp_path, index).get_quotes(["BHF"], timeout_seconds=2)["BHF"]
    assert (quote.open, quote.day_high, quote.day_low) == (None, None, None)
    assert quote.previous_close == data.close("BHF", index - 1)
    history = provider_on(tmp_path, index).get_historical("BHF", Period.D5, Interval.D1, timeout_seconds=2)
    assert history.bars[-1].close == float(csv_row["close"])
    assert history.bars[-1].open is None


# --- v7 quote. ---


@pytest.mark.parametrize("symbol", ["AAPL", "JPM", "BRK-B", "SPY", "XLK", "^GSPC", "^VIX"])
def test_a_quote_is_the_replay_days_bar_and_the_day_befores_close(symbol: str) -> None:
    item = quote_body(symbol)["quoteResponse"]["result"][0]
    today, before = day_of(symbol, START), day_of(symbol, START - 1)
    assert item["symbol"] == symbol
    assert item["regularMarketPrice"] == float(today["close"])
    assert item["regularMarketPreviousClose"] == float(before["close"])
    assert item["regularMarketChange"] == float(today["close"]) - float(before["close"])
    assert item["regularMarketChangePercent"] == pytest.approx(data.change_percent(symbol, START))
    assert item["regularMarketOpen"] == float(today["open"])
    assert item["regularMarketDayHigh"] == float(today["high"])
    assert item["regularMarketDayLow"] == float(today["low"])
    assert item["regularMarketVolume"] == int(today["volume"])
    assert item["replayBarDate"] == today["date"]


def test_names_come_from_the_constituents_list_or_are_left_out() -> None:
    items = {item["symbol"]: item for item in quote_body("AAPL,BRK-B,FB,SPY,^GSPC")["quoteResponse"]["result"]}
    assert items["AAPL"]["longName"] == constituent("AAPL")["Security"]
    assert items["BRK-B"]["longName"] == constituent("BRK.B")["Security"]
    for unnamed in ("FB", "SPY", "^GSPC"):  # FB is META in the 2020s list; funds have no row
        assert "longName" not in items[unnamed]
        assert "shortName" not in items[unnamed]
    assert (items["AAPL"]["quoteType"], items["SPY"]["quoteType"], items["^GSPC"]["quoteType"]) == (
        "EQUITY",
        "ETF",
        "INDEX",
    )


def test_a_name_is_given_only_where_the_list_describes_the_2017_company() -> None:
    """A row added to the index after the window may be another company on the same ticker (FOX was
    Twenty-First Century Fox): no name then, rather than a wrong one."""
    with CONSTITUENTS_CSV.open() as handle:
        rows = {row["Symbol"].replace(".", "-"): row for row in csv.DictReader(handle)}
    last_day = data.trading_days()[-1]
    stocks = data.stocks()
    items = {}
    for start in range(0, len(stocks), 200):
        chunk = ",".join(stocks[start : start + 200])
        items.update({item["symbol"]: item for item in quote_body(chunk, LAST)["quoteResponse"]["result"]})
    assert set(items) == set(stocks)
    for symbol, item in items.items():
        row = rows.get(symbol)
        expected = row["Security"] if row is not None and row["Date added"] <= last_day else None
        assert item.get("longName") == expected, symbol
    assert "longName" not in items["FOX"]
    assert "longName" not in items["IR"]


@pytest.mark.parametrize("symbol", data.LATE_LISTINGS)
def test_a_first_listed_day_has_no_previous_close(tmp_path: Path, symbol: str) -> None:
    first = data.first_day_index(symbol)
    item = quote_body(symbol, first)["quoteResponse"]["result"][0]
    assert item["regularMarketPrice"] == data.close(symbol, first)
    assert not {"regularMarketPreviousClose", "regularMarketChange", "regularMarketChangePercent"} & set(item)
    quote = provider_on(tmp_path, first).get_quotes([symbol], timeout_seconds=2)[symbol]
    assert quote.price == data.close(symbol, first)
    assert (quote.previous_close, quote.change, quote.change_percent) == (None, None, None)


def test_day_one_has_no_previous_close_for_anyone() -> None:
    items = quote_body("AAPL,SPY,^VIX", 0)["quoteResponse"]["result"]
    assert [item["regularMarketPrice"] for item in items] == [data.close(s, 0) for s in ("AAPL", "SPY", "^VIX")]
    assert all("regularMarketPreviousClose" not in item for item in items)


@pytest.mark.parametrize("symbol", ["ZZZZZ", "META", "TSLA", "XLC", "BABA", "BTC-USD"])
def test_a_symbol_outside_the_universe_is_yahoos_unknown_symbol_answer(tmp_path: Path, symbol: str) -> None:
    assert quote_body(symbol) == recorded_json("quote_SIX_unknown_symbol_empty")
    assert provider_on(tmp_path).get_quotes([symbol], timeout_seconds=2) == {}


def test_a_symbol_not_yet_listed_is_left_out_and_the_error_says_why(tmp_path: Path) -> None:
    first = data.first_day_index("APTV")
    day_before = data.trading_days()[first - 1]
    body = quote_body("APTV", first - 1)["quoteResponse"]
    assert body["result"] == []
    assert body["error"]["code"] == "Not Found"
    assert "APTV" in body["error"]["description"]
    assert f"not yet listed on {day_before}" in body["error"]["description"]
    with pytest.raises(ProviderSymbolNotFound) as caught:
        provider_on(tmp_path, first - 1).get_quotes(["APTV"], timeout_seconds=2)
    assert f"APTV was not yet listed on {day_before}" in caught.value.message
    assert not caught.value.counts_as_failure


def test_a_batch_with_a_symbol_not_yet_listed_answers_the_others(tmp_path: Path) -> None:
    first = data.first_day_index("DXC")
    quotes = provider_on(tmp_path, first - 1).get_quotes(["AAPL", "DXC", "ZZZZZ"], timeout_seconds=2)
    assert set(quotes) == {"AAPL"}
    assert quotes["AAPL"].price == data.close("AAPL", first - 1)


# --- v8 chart. ---


def history(
    tmp_path: Path, symbol: str, period: Period, interval: Interval = Interval.D1, day: int = START
) -> HistoricalData:
    return provider_on(tmp_path, day).get_historical(symbol, period, interval, timeout_seconds=2)


def rows_through(symbol: str, day_index: int) -> list[dict[str, str]]:
    return [row for index in range(day_index + 1) if (row := data.row(symbol, index)) is not None]


def months_before(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


@pytest.mark.parametrize("day_index", [START, LAST, 10])
def test_chart_ranges_count_back_from_the_replay_day_never_past_it(tmp_path: Path, day_index: int) -> None:
    rows = rows_through("MSFT", day_index)
    five = history(tmp_path, "MSFT", Period.D5, day=day_index)
    assert [bar.close for bar in five.bars] == [float(row["close"]) for row in rows[-5:]]
    assert [bar.volume for bar in five.bars] == [int(row["volume"]) for row in rows[-5:]]
    assert five.bars[-1].timestamp.date().isoformat() == data.trading_days()[day_index]
    last = date.fromisoformat(rows[-1]["date"])
    month = [row for row in rows if date.fromisoformat(row["date"]) > months_before(last, 1)]
    assert [bar.close for bar in history(tmp_path, "MSFT", Period.MO1, day=day_index).bars] == [
        float(row["close"]) for row in month
    ]
    year = [row for row in rows if date.fromisoformat(row["date"]) > months_before(last, 12)]
    assert [bar.close for bar in history(tmp_path, "MSFT", Period.Y1, day=day_index).bars] == [
        float(row["close"]) for row in year
    ]
    for period in (Period.Y5, Period.MAX):  # the whole window up to the replay day
        assert [bar.close for bar in history(tmp_path, "MSFT", period, day=day_index).bars] == [
            float(row["close"]) for row in rows
        ]
    ytd = history(tmp_path, "MSFT", Period.YTD, day=day_index)
    assert [bar.close for bar in ytd.bars] == [float(r["close"]) for r in rows if r["date"][:4] == rows[-1]["date"][:4]]


def test_weekly_and_monthly_bars_aggregate_the_real_daily_bars(tmp_path: Path) -> None:
    rows = rows_through("^GSPC", START)
    weekly = history(tmp_path, "^GSPC", Period.MAX, Interval.WK1)
    first_week = [
        r
        for r in rows
        if date.fromisoformat(r["date"]).isocalendar()[:2] == date.fromisoformat(rows[0]["date"]).isocalendar()[:2]
    ]
    bar = weekly.bars[0]
    assert bar.open == float(first_week[0]["open"])
    assert bar.high == max(float(r["high"]) for r in first_week)
    assert bar.low == min(float(r["low"]) for r in first_week)
    assert bar.close == float(first_week[-1]["close"])
    assert bar.volume == sum(int(r["volume"]) for r in first_week)
    assert weekly.bars[-1].close == float(rows[-1]["close"])  # the replay day's week, cut at the replay day
    monthly = history(tmp_path, "^GSPC", Period.MAX, Interval.MO1)
    assert len(monthly.bars) == len({r["date"][:7] for r in rows})
    assert monthly.bars[-1].close == float(rows[-1]["close"])


def test_intraday_charts_are_no_data(tmp_path: Path) -> None:
    with pytest.raises(ProviderNoData) as caught:
        history(tmp_path, "AAPL", Period.D1, Interval.M5)
    assert not caught.value.counts_as_failure


def test_an_unknown_symbols_chart_is_the_recorded_delisted_404(tmp_path: Path) -> None:
    response = session_on().get(f"{CHART_URL}ZZZZZ", params={"range": "1y", "interval": "1d"})
    assert response.status_code == 404
    assert response.json() == recorded_json("chart_SI_404_delisted")
    for symbol in ("ZZZZZ", "META", "XLC"):
        with pytest.raises(ProviderSymbolNotFound):
            history(tmp_path, symbol, Period.Y1)


def test_a_chart_before_the_listing_is_not_found_saying_why(tmp_path: Path) -> None:
    first = data.first_day_index("BHGE")
    with pytest.raises(ProviderSymbolNotFound) as caught:
        history(tmp_path, "BHGE", Period.Y1, day=first - 1)
    assert f"BHGE was not yet listed on {data.trading_days()[first - 1]}" in caught.value.message
    assert [bar.close for bar in history(tmp_path, "BHGE", Period.MAX, day=first).bars] == [data.close("BHGE", first)]


# --- v10 quoteSummary (profile). ---


@pytest.mark.parametrize(("symbol", "listed_as"), [("MSFT", "MSFT"), ("BRK-B", "BRK.B"), ("JPM", "JPM")])
def test_a_profile_carries_only_what_the_constituents_list_says(tmp_path: Path, symbol: str, listed_as: str) -> None:
    row = constituent(listed_as)
    profile = provider_on(tmp_path).get_profile(symbol, timeout_seconds=2)
    assert profile.name == row["Security"]
    assert profile.sector == row["GICS Sector"]
    assert profile.industry == row["GICS Sub-Industry"]
    assert (profile.description, profile.website, profile.employees, profile.market_cap) == (None, None, None, None)


def test_the_headquarters_are_served_verbatim() -> None:
    row = constituent("MMM")
    response = session_on().get(f"{SUMMARY_URL}MMM", params={"modules": "assetProfile"})
    assert response.json()["quoteSummary"]["result"][0]["assetProfile"] == {
        "sector": row["GICS Sector"],
        "industry": row["GICS Sub-Industry"],
        "headquartersLocation": row["Headquarters Location"],
    }


@pytest.mark.parametrize("symbol", ["FB", "SPY", "XLK", "^GSPC"])
def test_universe_symbols_the_list_does_not_know_are_no_data(tmp_path: Path, symbol: str) -> None:
    with pytest.raises(ProviderNoData) as caught:
        provider_on(tmp_path).get_profile(symbol, timeout_seconds=2)
    assert not caught.value.counts_as_failure


def test_an_unknown_symbols_profile_is_the_recorded_404(tmp_path: Path) -> None:
    for symbol in ("ZZZZZ", "META"):
        with pytest.raises(ProviderSymbolNotFound) as caught:
            provider_on(tmp_path).get_profile(symbol, timeout_seconds=2)
        assert "No fundamentals data found" in caught.value.message


def test_a_profile_before_the_listing_is_not_found_saying_why(tmp_path: Path) -> None:
    first = data.first_day_index("DWDP")
    with pytest.raises(ProviderSymbolNotFound) as caught:
        provider_on(tmp_path, first - 1).get_profile("DWDP", timeout_seconds=2)
    assert "not yet listed" in caught.value.message


# --- v1 search and news. ---


@pytest.mark.parametrize(
    ("query", "expected"),
    [("apple", ["AAPL"]), ("BRK", ["BRK-B"]), ("brk.b", ["BRK-B"]), ("zzzzzz", []), ("^vix", ["^VIX"])],
)
def test_search_matches_the_universe(tmp_path: Path, query: str, expected: list[str]) -> None:
    results = provider_on(tmp_path).search(query, 10, timeout_seconds=2)
    assert [r.symbol for r in results] == expected
    for result in results:
        if not result.symbol.startswith("^"):
            row = constituent(result.symbol.replace("-", "."))
            assert (result.name, result.sector) == (row["Security"], row["GICS Sector"])


def test_search_prefix_matches_come_before_name_matches(tmp_path: Path) -> None:
    symbols = [r.symbol for r in provider_on(tmp_path).search("MS", 50, timeout_seconds=2)]
    universe = set(load_universe().symbols)
    prefixed = sorted(s for s in universe if s.startswith("MS") and s != "MS")
    assert symbols[0] == "MS"  # the exact symbol first
    assert symbols[1 : 1 + len(prefixed)] == prefixed  # then symbols starting with it, alphabetically
    assert len(symbols) == len(set(symbols))


def test_search_finds_the_sector_funds(tmp_path: Path) -> None:
    results = provider_on(tmp_path).search("XL", 20, timeout_seconds=2)
    funds = [r.symbol for r in results if r.asset_type == "etf"]
    assert funds == sorted(load_universe().sector_etfs)


def test_search_leaves_out_symbols_not_yet_listed(tmp_path: Path) -> None:
    first = data.first_day_index("APTV")
    assert provider_on(tmp_path, first - 1).search("APTV", 5, timeout_seconds=2) == []
    assert [r.symbol for r in provider_on(tmp_path, first).search("APTV", 5, timeout_seconds=2)] == ["APTV"]


def test_search_without_a_query_is_the_recorded_400() -> None:
    response = session_on().get("https://query2.finance.yahoo.com/v1/finance/search")
    assert response.status_code == 400
    assert response.json() == recorded_json("search_missing_q_400")


def test_news_is_the_recorded_articles_about_the_symbol(tmp_path: Path) -> None:
    raw = [item for item in recorded_json("search_AAPL")["news"] if "AAPL" in item["relatedTickers"]]
    articles = provider_on(tmp_path).get_news("AAPL", 10, timeout_seconds=2)
    assert [a.title for a in articles] == [item["title"] for item in raw]
    assert [a.url for a in articles] == [item["link"] for item in raw]


@pytest.mark.parametrize(("symbol", "count"), [("BRK-B", 1), ("JPM", 0), ("ZZZZZ", 0), ("META", 0)])
def test_news_for_other_symbols_is_only_recorded_articles_about_them(tmp_path: Path, symbol: str, count: int) -> None:
    articles = provider_on(tmp_path).get_news(symbol, 10, timeout_seconds=2)
    assert len(articles) == count
    assert all(symbol in article.symbols for article in articles)


# --- v1 screener (movers). ---


def expected_movers(screener: str, day_index: int) -> list[str]:
    stocks = [s for s in data.stocks() if data.row(s, day_index) is not None]
    if screener == "most_actives":
        return sorted(stocks, key=lambda s: (-int(day_of(s, day_index)["volume"]), s))
    changes = {s: c for s in stocks if (c := data.change_percent(s, day_index)) is not None}
    if screener == "day_gainers":
        return sorted((s for s in changes if changes[s] > 0), key=lambda s: (-changes[s], s))
    return sorted((s for s in changes if changes[s] < 0), key=lambda s: (changes[s], s))


@pytest.mark.parametrize("day_index", [START, LAST])
@pytest.mark.parametrize(
    ("mover_type", "screener"),
    [(MoverType.GAINERS, "day_gainers"), (MoverType.LOSERS, "day_losers"), (MoverType.ACTIVES, "most_actives")],
)
def test_movers_are_computed_from_the_days_bars(
    tmp_path: Path, mover_type: MoverType, screener: str, day_index: int
) -> None:
    expected = expected_movers(screener, day_index)[:10]
    movers = provider_on(tmp_path, day_index).get_movers(mover_type, 10, timeout_seconds=2)
    assert [q.symbol for q in movers] == expected
    assert [q.price for q in movers] == [data.close(s, day_index) for s in expected]
    assert [q.volume for q in movers] == [int(day_of(s, day_index)["volume"]) for s in expected]


def test_a_screener_answer_is_yahoo_shaped_and_says_it_is_the_replay() -> None:
    response = session_on().get(SCREENER_URL, params={"scrIds": "day_gainers", "count": "5"})
    result = response.json()["finance"]["result"][0]
    assert result["count"] == len(result["quotes"]) == 5
    assert result["total"] == len(expected_movers("day_gainers", START))
    assert "replay" in result["title"].lower()
    assert data.trading_days()[START] in result["description"]
    direct = quote_body(",".join(item["symbol"] for item in result["quotes"]))["quoteResponse"]["result"]
    assert result["quotes"] == direct  # the same items the quote endpoint gives that day


# --- Consistency: whatever an answer names can be quoted that day. ---


@pytest.mark.parametrize("day_index", [0, data.first_day_index("APTV"), START, LAST])
def test_every_symbol_an_answer_names_can_be_quoted_that_day(tmp_path: Path, day_index: int) -> None:
    provider = provider_on(tmp_path, day_index)
    named: set[str] = set()
    for mover_type in MoverType:
        named |= {q.symbol for q in provider.get_movers(mover_type, 25, timeout_seconds=2)}
    for query in ("a", "bank", "XL", "^", "APTV", "energy"):
        named |= {r.symbol for r in provider.search(query, 25, timeout_seconds=2)}
    for symbol in ("AAPL", "BRK-B", "GOOG"):
        named |= {s for article in provider.get_news(symbol, 10, timeout_seconds=2) for s in article.symbols}
    assert len(named) > 50
    quotes: dict[str, Any] = {}
    ordered = sorted(named)
    for start in range(0, len(ordered), 100):
        quotes.update(provider.get_quotes(ordered[start : start + 100], timeout_seconds=2))
    assert set(quotes) == named
    for symbol in ordered[:: max(1, len(ordered) // 15)]:
        assert provider.get_historical(symbol, Period.D5, Interval.D1, timeout_seconds=2).bars


@pytest.mark.parametrize("symbol", ["ZZZZZ", "META", "XLC", "APTV", "FB", "SPY"])
def test_no_per_symbol_miss_is_a_vendor_failure(tmp_path: Path, symbol: str) -> None:
    """Whatever the replay has no data for, each endpoint answers a per-symbol shape (not found or no
    data), never one the adapter reads as the vendor failing."""
    provider = provider_on(tmp_path, data.first_day_index("APTV") - 1)
    calls: list[Callable[[], object]] = [
        lambda: provider.get_quotes([symbol], timeout_seconds=2),
        lambda: provider.get_historical(symbol, Period.MO1, Interval.D1, timeout_seconds=2),
        lambda: provider.get_historical(symbol, Period.D1, Interval.M1, timeout_seconds=2),
        lambda: provider.get_profile(symbol, timeout_seconds=2),
        lambda: provider.get_news(symbol, 5, timeout_seconds=2),
        lambda: provider.search(symbol, 5, timeout_seconds=2),
    ]
    raised: list[ProviderError] = []
    for call in calls:
        try:
            call()
        except ProviderError as exc:
            raised.append(exc)
    assert [type(exc) for exc in raised if not isinstance(exc, ProviderSymbolNotFound | ProviderNoData)] == []
    assert not [exc.message for exc in raised if exc.counts_as_failure]


def test_every_kind_answers_offline_labelled_replay(tmp_path: Path) -> None:
    transport = transport_on()
    session = build_session(timeout_cap_seconds=1, transport=transport)
    provider = YahooProvider(session, cache_dir=str(tmp_path), source_label="replay")
    assert provider.capabilities == frozenset(DataKind)
    assert provider.get_quotes(["AAPL"], timeout_seconds=2)
    assert provider.get_historical("NVDA", Period.MO1, Interval.D1, timeout_seconds=2).bars
    assert provider.get_profile("AAPL", timeout_seconds=2).sector
    assert provider.search("apple", 5, timeout_seconds=2)
    assert provider.get_news("AAPL", 5, timeout_seconds=2)
    assert provider.get_movers(MoverType.GAINERS, 5, timeout_seconds=2)
    assert provider.name == "replay"
    assert all("finance.yahoo.com" in url or "fc.yahoo.com" in url for url in transport.requests_seen)
    assert transport.replay_day().isoformat() == data.trading_days()[START]


def test_anything_unserved_is_a_404_naming_the_url() -> None:
    response = session_on().get(f"{SUMMARY_URL}AAPL")  # no modules
    assert response.status_code == 404
    assert "quoteSummary/AAPL" in json.loads(response.text)["error"]
    response = session_on().get(SCREENER_URL, params={"scrIds": "aggressive_small_caps"})
    assert response.status_code == 404
