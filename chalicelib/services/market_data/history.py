"""Which period and interval combinations a history request may ask for."""

from __future__ import annotations

from chalicelib.errors import ValidationFailed
from chalicelib.models.market import Interval, Period

# Which intervals a range may be asked in: the tightest vendor limits (Yahoo's), so any vendor can answer.
_INTRADAY_MAX_PERIOD: dict[Interval, frozenset[Period]] = {
    Interval.M1: frozenset({Period.D1, Period.D5}),
    Interval.M5: frozenset({Period.D1, Period.D5, Period.MO1}),
    Interval.M15: frozenset({Period.D1, Period.D5, Period.MO1}),
    Interval.M30: frozenset({Period.D1, Period.D5, Period.MO1}),
    Interval.H1: frozenset(
        {Period.D1, Period.D5, Period.MO1, Period.MO3, Period.MO6, Period.Y1, Period.Y2, Period.YTD}
    ),
}


def history_combinations() -> str:
    """The rule validate_history_request enforces, in words (the OpenAPI document's description)."""
    ranges = "; ".join(
        f"{interval.value} for {', '.join(p.value for p in Period if p in periods)}"
        for interval, periods in _INTRADAY_MAX_PERIOD.items()
    )
    others = ", ".join(i.value for i in Interval if i not in _INTRADAY_MAX_PERIOD)
    return (
        f"Intraday intervals are offered for short periods only (the tightest vendor limits, so any vendor can "
        f"answer): {ranges}. Any other combination, including an intraday interval with the default period "
        f"{Period.Y1.value}, is a 400 naming the periods the interval allows; {others} go with every period."
    )


def validate_history_request(period: Period, interval: Interval) -> None:
    allowed = _INTRADAY_MAX_PERIOD.get(interval)
    if allowed is not None and period not in allowed:
        options = ", ".join(sorted(p.value for p in allowed))
        raise ValidationFailed(
            f"interval {interval.value} is offered for periods {options} only (asked: {period.value})"
        )
