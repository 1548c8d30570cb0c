"""The US market calendar every vendor's datasets share: New York session times, how far back a period
reaches, and where a daily/weekly/monthly bar is stamped (the standard model: the bar's open, in UTC)."""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from chalicelib.models.market import Interval, Period, PriceBar

NEW_YORK = ZoneInfo("America/New_York")
SESSION_OPEN = time(9, 30)
SESSION_CLOSE = time(16, 0)

PERIOD_MONTHS: Mapping[Period, int] = {
    Period.MO1: 1,
    Period.MO3: 3,
    Period.MO6: 6,
    Period.Y1: 12,
    Period.Y2: 24,
    Period.Y5: 60,
    Period.Y10: 120,
}
# "1d"/"5d" mean the last 1 / 5 sessions (as Yahoo reads them), not calendar days: ask for a window
# that surely holds them (long weekends, holidays) and keep the newest sessions.
SESSION_PERIODS: Mapping[Period, int] = {Period.D1: 1, Period.D5: 5}
SESSION_WINDOW_DAYS = 10
# "max": a start before any US listing; vendors answer from the first bar they hold.
MAX_START = date(1900, 1, 1)


def new_york_today(now: datetime) -> date:
    """The exchange's calendar date at ``now`` (vendors' daily dates are New York session dates)."""
    return now.astimezone(NEW_YORK).date()


def at_new_york(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=NEW_YORK).astimezone(UTC)


def months_before(day: date, months: int) -> date:
    """The same day ``months`` earlier, clamped to the month's last day (Mar 31 - 1 month = Feb 29)."""
    index = day.year * 12 + (day.month - 1) - months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def history_start(period: Period, today: date) -> date:
    """The first date to ask daily bars from for ``period`` ending ``today``."""
    if period in SESSION_PERIODS:
        return today - timedelta(days=SESSION_WINDOW_DAYS)
    if period is Period.YTD:
        return date(today.year, 1, 1)
    if period is Period.MAX:
        return MAX_START
    return months_before(today, PERIOD_MONTHS[period])


def period_first_day(day: date, interval: Interval) -> date:
    """The calendar start of the week (Monday) or month a day belongs to; the day itself for other bars."""
    if interval is Interval.WK1:
        return day - timedelta(days=day.weekday())
    if interval is Interval.MO1:
        return day.replace(day=1)
    return day


def first_weekday(day: date) -> date:
    """``day``, or the Monday after it when it falls on a weekend (a month's first session)."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def keep_last_sessions(bars: Sequence[PriceBar], sessions: int) -> list[PriceBar]:
    """The bars of the newest ``sessions`` New York session dates (bars oldest first)."""
    dates = sorted({bar.timestamp.astimezone(NEW_YORK).date() for bar in bars})
    keep = set(dates[-sessions:])
    return [bar for bar in bars if bar.timestamp.astimezone(NEW_YORK).date() in keep]
