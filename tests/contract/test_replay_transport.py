"""The replay source serves genuine recordings and real daily prices, and says so."""

from __future__ import annotations

import calendar
import csv
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.yahoo import YahooProvider
from chalicelib.errors import ProviderNoData, ProviderSymbolNotFound, ProviderUnavailable, ProviderUnsupported
from chalicelib.models.market import DataKind, HistoricalData, Interval, MoverType, Period
from infra.local.replay.transport import CONSTITUENTS_CSV, DAILY_DIR, YahooReplayTransport, yahoo_replay_data
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


# --- every data kind, driven through YahooProvider with the replay transport mounted ---------------

CHART_URL = "https://query2.finance.yahoo.com/v8/finance/chart/"


def _replay_provider(tmp_path: Path) -> tuple[YahooProvider, YahooReplayTransport]:
    transport = YahooReplayTransport()
    session = build_session(timeout_cap_seconds=1, transport=transport)
    provider = YahooProvider(
        session, cache_dir=str(tmp_path), source_label="replay", clock=lambda: datetime(2025, 2, 24, tzinfo=UTC)
    )
    return provider, transport


def _history(tmp_path: Path, symbol: str, period: Period, interval: Interval = Interval.D1) -> HistoricalData:
    provider, _ = _replay_provider(tmp_path)
    return provider.get_historical(symbol, period, interval, timeout_seconds=2)


def _csv_rows(name: str) -> list[dict[str, str]]:
    with (DAILY_DIR / name).open() as handle:
        return [{"Date": row.get("Date") or row[""], **row} for row in csv.DictReader(handle)]


def _months_before(day: date, months: int) -> date:
    year, month = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def test_chart_with_a_recording_serves_it_whatever_range_is_asked(tmp_path: Path) -> None:
    raw = recorded_json("chart_AAPL_1d_2020-08-31_2020-11-07")["chart"]["result"][0]
    for period in (Period.D5, Period.Y10):
        history = _history(tmp_path, "AAPL", period)
        assert [bar.close for bar in history.bars] == raw["indicators"]["quote"][0]["close"]
        assert [int(bar.timestamp.timestamp()) for bar in history.bars] == raw["timestamp"]


def test_chart_of_a_csv_only_symbol_is_the_last_bars_of_its_real_series(tmp_path: Path) -> None:
    rows = _csv_rows("SPY_daily_2021-10-15_2022-10-14.csv")
    five = _history(tmp_path, "SPY", Period.D5)
    assert [bar.close for bar in five.bars] == [float(row["Close"]) for row in rows[-5:]]
    assert [bar.volume for bar in five.bars] == [int(row["Volume"]) for row in rows[-5:]]
    assert [bar.adj_close for bar in five.bars] == [float(row["Adj Close"]) for row in rows[-5:]]
    assert five.bars[-1].timestamp.date().isoformat() == rows[-1]["Date"]

    last = date.fromisoformat(rows[-1]["Date"])
    month = [row for row in rows if date.fromisoformat(row["Date"]) > _months_before(last, 1)]
    assert [bar.close for bar in _history(tmp_path, "SPY", Period.MO1).bars] == [float(r["Close"]) for r in month]
    assert len(_history(tmp_path, "SPY", Period.MAX).bars) == len(rows)


def test_index_chart_comes_from_its_daily_series(tmp_path: Path) -> None:
    rows = _csv_rows("GSPC_daily_2001-01-02_2010-12-31.csv")
    history = _history(tmp_path, "^GSPC", Period.YTD)
    assert [bar.close for bar in history.bars] == [float(r["Close"]) for r in rows if r["Date"].startswith("2010")]


def test_weekly_bars_aggregate_the_real_daily_bars(tmp_path: Path) -> None:
    rows = _csv_rows("GOOG_daily_2004-08-19_2013-03-01.csv")  # no 1wk recording for GOOG: derived from the CSV
    history = _history(tmp_path, "GOOG", Period.MAX, Interval.WK1)
    first_week = [r for r in rows if date.fromisoformat(r["Date"]).isocalendar()[:2] == (2004, 34)]
    bar = history.bars[0]
    assert bar.open == float(first_week[0]["Open"])
    assert bar.high == max(float(r["High"]) for r in first_week)
    assert bar.low == min(float(r["Low"]) for r in first_week)
    assert bar.close == float(first_week[-1]["Close"])
    assert bar.volume == sum(int(r["Volume"]) for r in first_week)
    assert bar.adj_close is None  # this CSV has no adjusted close: none is made up


@pytest.mark.parametrize(
    ("symbol", "period", "interval"),
    [
        ("NVDA", Period.MO1, Interval.M5),  # a CSV has daily bars only
        ("AAPL", Period.D1, Interval.M1),  # the recorded 1m answer is the genuine empty weekend
        ("JPM", Period.Y1, Interval.D1),  # a real constituent without recorded prices
        ("BEKE", Period.Y1, Interval.D1),  # the genuine 400 recording
    ],
)
def test_charts_without_recorded_bars_are_no_data(
    tmp_path: Path, symbol: str, period: Period, interval: Interval
) -> None:
    with pytest.raises(ProviderNoData):
        _history(tmp_path, symbol, period, interval)


def test_unknown_symbols_chart_is_the_recorded_delisted_404(tmp_path: Path) -> None:
    session = build_session(timeout_cap_seconds=1, transport=YahooReplayTransport())
    response = session.get(f"{CHART_URL}ZZZZZ", params={"range": "1y", "interval": "1d"})
    assert response.status_code == 404
    assert response.json() == recorded_json("chart_SI_404_delisted")
    for symbol in ("ZZZZZ", "MDLY"):
        with pytest.raises(ProviderSymbolNotFound):
            _history(tmp_path, symbol, Period.Y1)


def test_replay_keeps_yahoos_intraday_limits(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnsupported):
        _history(tmp_path, "AAPL", Period.MO3, Interval.M5)


def test_recorded_profile_combines_the_recorded_modules(tmp_path: Path) -> None:
    provider, _ = _replay_provider(tmp_path)
    profile = provider.get_profile("AAPL", timeout_seconds=2)
    asset = recorded_json("quoteSummary_assetProfile_AAPL")["quoteSummary"]["result"][0]["assetProfile"]
    price = recorded_json("quoteSummary_price_AAPL")["quoteSummary"]["result"][0]["price"]
    assert profile.description == asset["longBusinessSummary"]
    assert profile.employees == asset["fullTimeEmployees"]
    assert profile.name == price["longName"]
    assert profile.market_cap == price["marketCap"]


def _constituent(symbol: str) -> dict[str, str]:
    with CONSTITUENTS_CSV.open() as handle:
        return next(row for row in csv.DictReader(handle) if row["Symbol"] == symbol)


@pytest.mark.parametrize(("symbol", "listed_as"), [("MSFT", "MSFT"), ("BRK-B", "BRK.B")])
def test_constituent_profile_carries_only_what_the_constituents_list_says(
    tmp_path: Path, symbol: str, listed_as: str
) -> None:
    row = _constituent(listed_as)
    provider, _ = _replay_provider(tmp_path)
    profile = provider.get_profile(symbol, timeout_seconds=2)
    assert profile.name == row["Security"]
    assert profile.sector == row["GICS Sector"]
    assert profile.industry == row["GICS Sub-Industry"]
    assert (profile.description, profile.website, profile.employees, profile.market_cap) == (None, None, None, None)


def test_constituent_quote_summary_serves_the_headquarters_verbatim() -> None:
    row = _constituent("MMM")
    session = build_session(timeout_cap_seconds=1, transport=YahooReplayTransport())
    response = session.get(
        "https://query2.finance.yahoo.com/v10/finance/quoteSummary/MMM", params={"modules": "assetProfile"}
    )
    profile = response.json()["quoteSummary"]["result"][0]["assetProfile"]
    assert profile == {
        "sector": row["GICS Sector"],
        "industry": row["GICS Sub-Industry"],
        "headquartersLocation": row["Headquarters Location"],
    }


def test_unknown_symbols_profile_is_the_recorded_404(tmp_path: Path) -> None:
    provider, _ = _replay_provider(tmp_path)
    with pytest.raises(ProviderSymbolNotFound) as caught:
        provider.get_profile("ZZZZZ", timeout_seconds=2)
    assert "No fundamentals data found" in caught.value.message


def test_known_instrument_without_a_recorded_profile_is_an_explicit_replay_error(tmp_path: Path) -> None:
    provider, _ = _replay_provider(tmp_path)
    with pytest.raises(ProviderUnavailable) as caught:
        provider.get_profile("QQQ", timeout_seconds=2)
    assert "replay has no recorded data for QQQ" in caught.value.message


def test_recorded_search_is_served(tmp_path: Path) -> None:
    provider, _ = _replay_provider(tmp_path)
    raw = [item["symbol"] for item in recorded_json("search_GOOG")["quotes"] if "symbol" in item]
    assert [r.symbol for r in provider.search("goog", 10, timeout_seconds=2)] == raw
    assert [r.symbol for r in provider.search("GOOG", 2, timeout_seconds=2)] == raw[:2]


@pytest.mark.parametrize(
    ("query", "expected"),
    [("apple", ["AAPL"]), ("BRK", ["BRK-B"]), ("brk.b", ["BRK-B"]), ("zzzzzz", [])],
)
def test_other_searches_match_the_constituents_list(tmp_path: Path, query: str, expected: list[str]) -> None:
    provider, _ = _replay_provider(tmp_path)
    results = provider.search(query, 10, timeout_seconds=2)
    assert [r.symbol for r in results] == expected
    for result in results:
        row = _constituent(result.symbol.replace("-", "."))
        assert (result.name, result.sector) == (row["Security"], row["GICS Sector"])


def test_search_prefix_matches_come_before_name_matches(tmp_path: Path) -> None:
    provider, _ = _replay_provider(tmp_path)
    symbols = [r.symbol for r in provider.search("MS", 50, timeout_seconds=2)]
    assert symbols[0] == "MS"  # exact symbol first
    assert symbols[1:3] == ["MSCI", "MSFT"]  # then symbols starting with it, alphabetically
    assert len(symbols) == len(set(symbols))


def test_search_without_a_query_is_the_recorded_400() -> None:
    session = build_session(timeout_cap_seconds=1, transport=YahooReplayTransport())
    response = session.get("https://query2.finance.yahoo.com/v1/finance/search")
    assert response.status_code == 400
    assert response.json() == recorded_json("search_missing_q_400")


def test_news_for_a_recorded_search_is_the_recorded_news(tmp_path: Path) -> None:
    provider, _ = _replay_provider(tmp_path)
    raw = recorded_json("search_AAPL")["news"]
    articles = provider.get_news("AAPL", 10, timeout_seconds=2)
    assert [a.title for a in articles] == [item["title"] for item in raw]
    assert [a.url for a in articles] == [item["link"] for item in raw]


@pytest.mark.parametrize(("symbol", "count"), [("META", 1), ("MSFT", 1), ("BRK-B", 1), ("JPM", 0), ("ZZZZZ", 0)])
def test_news_for_other_symbols_is_only_recorded_articles_about_them(tmp_path: Path, symbol: str, count: int) -> None:
    provider, _ = _replay_provider(tmp_path)
    articles = provider.get_news(symbol, 10, timeout_seconds=2)
    assert len(articles) == count
    assert all(symbol in article.symbols for article in articles)


@pytest.mark.parametrize(
    ("mover_type", "name"), [(MoverType.GAINERS, "screener_day_gainers"), (MoverType.LOSERS, "screener_day_losers")]
)
def test_gainers_and_losers_are_the_recorded_screeners(tmp_path: Path, mover_type: MoverType, name: str) -> None:
    provider, _ = _replay_provider(tmp_path)
    raw = recorded_json(name)["finance"]["result"][0]["quotes"]
    movers = provider.get_movers(mover_type, 3, timeout_seconds=2)
    assert [(q.symbol, q.price) for q in movers] == [(i["symbol"], i["regularMarketPrice"]) for i in raw[:3]]


def test_most_actives_are_the_recorded_movers_by_volume(tmp_path: Path) -> None:
    items: list[dict[str, Any]] = [
        *recorded_json("screener_day_gainers")["finance"]["result"][0]["quotes"],
        *recorded_json("screener_day_losers")["finance"]["result"][0]["quotes"],
    ]
    expected = sorted(items, key=lambda item: item["regularMarketVolume"], reverse=True)
    provider, _ = _replay_provider(tmp_path)
    movers = provider.get_movers(MoverType.ACTIVES, 25, timeout_seconds=2)
    assert [(q.symbol, q.volume) for q in movers] == [(i["symbol"], i["regularMarketVolume"]) for i in expected]
    session = build_session(timeout_cap_seconds=1, transport=YahooReplayTransport())
    response = session.get(
        "https://query2.finance.yahoo.com/v1/finance/screener/predefined/saved", params={"scrIds": "most_actives"}
    )
    assert "replay" in response.json()["finance"]["result"][0]["title"].lower()


def test_every_kind_answers_offline_labelled_replay(tmp_path: Path) -> None:
    provider, transport = _replay_provider(tmp_path)
    assert provider.capabilities == frozenset(DataKind)
    assert provider.get_quotes(["AAPL"], timeout_seconds=2)
    assert provider.get_historical("NVDA", Period.MO1, Interval.D1, timeout_seconds=2).bars
    assert provider.get_profile("AAPL", timeout_seconds=2).sector
    assert provider.search("apple", 5, timeout_seconds=2)
    assert provider.get_news("AAPL", 5, timeout_seconds=2)
    assert provider.get_movers(MoverType.GAINERS, 5, timeout_seconds=2)
    assert provider.name == "replay"
    assert all("finance.yahoo.com" in url or "fc.yahoo.com" in url for url in transport.requests_seen)
