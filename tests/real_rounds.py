"""Publish rounds made of real prices: 20 S&P 500 constituents over 6 trading days
(tests/fixtures/streaming/README.md), one round per day, every price changing from one round to the next."""

from __future__ import annotations

import csv
import functools
from datetime import UTC, date, datetime, time
from pathlib import Path

from chalicelib.models.market import Quote
from chalicelib.models.served import Provenance, Served

FIXTURE = Path(__file__).parent / "fixtures" / "streaming" / "sp500_20_symbols_6_days.csv"
SOURCE = "kaggle-sp500"


@functools.cache
def daily_quotes() -> tuple[tuple[Served[Quote], ...], ...]:
    """Each day's quotes (closing price, change from the previous day's close, volume), oldest first."""
    by_day: dict[str, list[dict[str, str]]] = {}
    with FIXTURE.open(newline="") as handle:
        for row in csv.DictReader(handle):
            by_day.setdefault(row["date"], []).append(row)
    previous: dict[str, float] = {}
    days: list[tuple[Served[Quote], ...]] = []
    for day, rows in sorted(by_day.items()):
        close_at = datetime.combine(date.fromisoformat(day), time(21, 0), UTC)  # 16:00 New York
        quotes = []
        for row in rows:
            close = float(row["close"])
            before = previous.get(row["symbol"])
            quote = Quote(
                symbol=row["symbol"],
                price=close,
                change=round(close - before, 4) if before is not None else None,
                change_percent=round((close - before) / before * 100, 4) if before else None,
                volume=int(row["volume"]),
                as_of=close_at,
            )
            quotes.append(Served(quote, Provenance(SOURCE, retrieved_at=close_at, cached=False, stale=False)))
            previous[row["symbol"]] = close
        days.append(tuple(quotes))
    return tuple(days)


def fixture_symbols() -> list[str]:
    return sorted(q.payload.symbol for q in daily_quotes()[0])
