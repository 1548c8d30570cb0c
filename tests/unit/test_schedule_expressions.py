"""EventBridge schedule expressions as the local scheduler reads them: rate(...) and 6-field cron(...)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from infra.local.scheduler import (
    CronSchedule,
    RateSchedule,
    aws_weekday,
    next_fire,
    parse_overrides,
    parse_schedule,
    plan_jobs,
    scheduler_settings_from_env,
)

# The app's schedules (app.py / chalicelib/jobs_api.py defaults).
APP_DEFAULTS = {
    "refresh_quotes": "rate(1 minute)",
    "refresh_indices": "rate(2 minutes)",
    "refresh_market": "rate(5 minutes)",
    "refresh_sentiment": "rate(5 minutes)",
    "warm_cache": "rate(6 hours)",
    "cleanup": "cron(0 2 * * ? *)",
}
JOBS = list(APP_DEFAULTS)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- rate(...) ---


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(2 minutes)", 120),
        ("rate(5 minutes)", 300),
        ("rate(6 hours)", 21600),
        ("rate(1 hour)", 3600),
        ("rate(1 day)", 86400),
        ("rate(3 days)", 259200),
    ],
)
def test_rate_is_its_period_from_the_reference_time(expression: str, seconds: int) -> None:
    schedule = parse_schedule(expression)
    assert schedule == RateSchedule(float(seconds), expression)
    after = at("2025-03-01T12:00:07")
    assert next_fire(expression, after) == after + timedelta(seconds=seconds)


def test_rate_counts_from_its_anchor_like_a_rule_counts_from_its_creation() -> None:
    anchor = at("2025-03-01T12:00:00")
    assert next_fire("rate(5 minutes)", at("2025-03-01T12:07:30"), anchor) == at("2025-03-01T12:10:00")
    # Exactly on a tick: the next one (strictly after).
    assert next_fire("rate(5 minutes)", at("2025-03-01T12:10:00"), anchor) == at("2025-03-01T12:15:00")
    # Before the anchor: the first tick is one period after it.
    assert next_fire("rate(5 minutes)", at("2025-03-01T11:00:00"), anchor) == at("2025-03-01T12:05:00")


def test_rate_is_case_and_space_tolerant_like_eventbridge() -> None:
    assert parse_schedule(" rate( 10  Minutes ) ") == RateSchedule(600.0, "rate( 10  Minutes )")


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("rate(1 minutes)", "wants 1 minute"),
        ("rate(5 minute)", "wants 5 minutes"),
        ("rate(0 minutes)", "positive"),
        ("rate(30 seconds)", "not minute(s), hour(s) or day(s)"),
        ("rate(1 week)", "not minute(s), hour(s) or day(s)"),
        ("rate(-1 minutes)", "neither rate"),
        ("rate(1.5 hours)", "neither rate"),
        ("rate(minutes)", "neither rate"),
    ],
)
def test_invalid_rates_are_refused_naming_the_expression(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=r"schedule expression") as caught:
        parse_schedule(expression)
    assert repr(expression) in str(caught.value)
    assert reason in str(caught.value)


# --- cron(...) ---


def test_the_apps_cleanup_cron_fires_daily_at_two_utc() -> None:
    expression = APP_DEFAULTS["cleanup"]
    assert next_fire(expression, at("2025-03-01T01:59:59")) == at("2025-03-01T02:00:00")
    assert next_fire(expression, at("2025-03-01T02:00:00")) == at("2025-03-02T02:00:00")  # strictly after
    assert next_fire(expression, at("2025-03-01T02:00:30")) == at("2025-03-02T02:00:00")
    assert next_fire(expression, at("2025-12-31T03:00:00")) == at("2026-01-01T02:00:00")


@pytest.mark.parametrize("name", JOBS)
def test_every_default_expression_of_the_app_parses_and_fires_in_the_future(name: str) -> None:
    after = at("2025-06-15T10:20:30")
    fire = next_fire(APP_DEFAULTS[name], after)
    assert after < fire <= after + timedelta(days=1)


def test_every_scheduled_function_of_the_app_is_readable_and_parses() -> None:
    import app
    from infra.local.lambda_runtime import schedule_handlers

    functions = schedule_handlers()
    assert {function.name for function in functions} == set(APP_DEFAULTS)
    for function in functions:
        parse_schedule(function.expression)
        assert function.handler == f"job_{function.name}"
        assert callable(getattr(app, function.handler))


def test_steps_from_star_and_from_a_start() -> None:
    schedule = parse_schedule("cron(*/15 * * * ? *)")
    assert isinstance(schedule, CronSchedule)
    assert schedule.minutes == {0, 15, 30, 45}
    assert next_fire("cron(*/15 * * * ? *)", at("2025-03-01T10:16:00")) == at("2025-03-01T10:30:00")
    start_step = parse_schedule("cron(5/20 * * * ? *)")
    assert isinstance(start_step, CronSchedule)
    assert start_step.minutes == {5, 25, 45}
    assert next_fire("cron(5/20 * * * ? *)", at("2025-03-01T10:46:00")) == at("2025-03-01T11:05:00")
    ranged = parse_schedule("cron(0 8-18/5 * * ? *)")
    assert isinstance(ranged, CronSchedule)
    assert ranged.hours == {8, 13, 18}


def test_ranges_and_lists() -> None:
    expression = "cron(0,30 9-11 * * ? *)"
    after = at("2025-03-03T08:00:00")
    fires = []
    for _ in range(7):
        after = next_fire(expression, after)
        fires.append(after.strftime("%H:%M"))
    assert fires == ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30", "09:00"]


def test_day_of_week_one_is_sunday_as_on_aws() -> None:
    assert aws_weekday(at("2025-03-02T00:00:00")) == 1  # a Sunday
    assert aws_weekday(at("2025-03-08T00:00:00")) == 7  # a Saturday
    # Monday 2025-03-03 → the next 1 (Sunday) is 2025-03-09.
    assert next_fire("cron(0 12 ? * 1 *)", at("2025-03-03T00:00:00")) == at("2025-03-09T12:00:00")
    assert next_fire("cron(0 12 ? * SUN *)", at("2025-03-03T00:00:00")) == at("2025-03-09T12:00:00")
    assert next_fire("cron(0 12 ? * 7 *)", at("2025-03-03T00:00:00")) == at("2025-03-08T12:00:00")


def test_weekday_and_month_names() -> None:
    # Friday 2025-03-07 18:00 → Monday 2025-03-10 09:00.
    assert next_fire("cron(0 9 ? * MON-FRI *)", at("2025-03-07T18:00:00")) == at("2025-03-10T09:00:00")
    assert next_fire("cron(0 9 ? * mon,wed *)", at("2025-03-10T10:00:00")) == at("2025-03-12T09:00:00")
    assert next_fire("cron(0 0 1 JAN,JUL ? *)", at("2025-03-01T00:00:00")) == at("2025-07-01T00:00:00")
    assert next_fire("cron(0 0 1 jun-aug ? *)", at("2025-08-02T00:00:00")) == at("2026-06-01T00:00:00")


def test_end_of_month_rollover() -> None:
    assert next_fire("cron(* * * * ? *)", at("2025-01-31T23:59:00")) == at("2025-02-01T00:00:00")
    # Day 31 skips the months without one.
    assert next_fire("cron(0 0 31 * ? *)", at("2025-03-31T00:00:00")) == at("2025-05-31T00:00:00")
    # 29 February: the next leap year.
    assert next_fire("cron(0 0 29 2 ? *)", at("2025-03-01T00:00:00")) == at("2028-02-29T00:00:00")


def test_end_of_year_rollover() -> None:
    assert next_fire("cron(* * * * ? *)", at("2024-12-31T23:59:30")) == at("2025-01-01T00:00:00")
    assert next_fire("cron(0 0 1 1 ? *)", at("2025-01-01T00:00:00")) == at("2026-01-01T00:00:00")


def test_year_field_limits_the_years() -> None:
    assert next_fire("cron(0 0 1 1 ? 2030-2031)", at("2025-05-05T00:00:00")) == at("2030-01-01T00:00:00")
    with pytest.raises(ValueError, match=r"'cron\(0 0 1 1 \? 2030\)' never fires after"):
        next_fire("cron(0 0 1 1 ? 2030)", at("2030-06-01T00:00:00"))


def test_times_are_utc_naive_is_taken_as_utc_and_seconds_are_ignored() -> None:
    eastern = timezone(timedelta(hours=-5))
    # 20:30 at UTC-5 is 01:30 UTC the next day → 02:00 UTC that day.
    assert next_fire("cron(0 2 * * ? *)", datetime(2025, 3, 1, 20, 30, tzinfo=eastern)) == at("2025-03-02T02:00:00")
    assert next_fire("cron(0 2 * * ? *)", datetime(2025, 3, 1, 1, 0)) == at("2025-03-01T02:00:00")
    assert next_fire("cron(* * * * ? *)", at("2025-03-01T01:00:59.9")) == at("2025-03-01T01:01:00")


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("cron(0 0 L * ? *)", "L, W and # are not supported"),
        ("cron(0 0 15W * ? *)", "L, W and # are not supported"),
        ("cron(0 0 LW * ? *)", "L, W and # are not supported"),
        ("cron(0 0 ? * 6#3 *)", "L, W and # are not supported"),
        ("cron(0 0 ? * FRI#3 *)", "L, W and # are not supported"),
        ("cron(0 0 ? * 5L *)", "L, W and # are not supported"),
        ("cron(0 2 * * *)", "cron needs 6 fields"),
        ("cron(0 2 * * ? * *)", "cron needs 6 fields"),
        ("cron(0 2 * * * *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 2 ? * ? *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(60 2 * * ? *)", "60 is outside 0-59"),
        ("cron(0 24 * * ? *)", "24 is outside 0-23"),
        ("cron(0 0 0 * ? *)", "0 is outside 1-31"),
        ("cron(0 0 ? * 8 *)", "8 is outside 1-7"),
        ("cron(0 0 1 13 ? *)", "13 is outside 1-12"),
        ("cron(0 0 1 FOO ? *)", "not a number or a name"),
        ("cron(0 0 1 1 ? 1969)", "1969 is outside 1970-2199"),
        ("cron(30-10 * * * ? *)", "runs backwards"),
        ("cron(*/0 * * * ? *)", "step '0' is not a positive whole number"),
        ("cron(1,,2 * * * ? *)", "empty list item"),
        ("cron(? * * * ? *)", "'?' is only allowed"),
        ("every 5 minutes", "neither rate(N unit) nor cron(6 fields)"),
        ("", "neither rate"),
    ],
)
def test_invalid_crons_are_refused_naming_the_expression(expression: str, reason: str) -> None:
    with pytest.raises(ValueError, match=r"schedule expression") as caught:
        parse_schedule(expression)
    assert repr(expression) in str(caught.value)
    assert reason in str(caught.value)


# --- LOCAL_SCHEDULE / LOCAL_SCHEDULER ---


def test_overrides_are_seconds_or_off() -> None:
    assert parse_overrides("refresh_quotes=5s, refresh_indices=10,cleanup=off,warm_cache=0.2s,", JOBS) == {
        "refresh_quotes": 5.0,
        "refresh_indices": 10.0,
        "cleanup": None,
        "warm_cache": 0.2,
    }
    assert parse_overrides("", JOBS) == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("refresh_qotes=5s", "unknown job 'refresh_qotes'; the jobs are refresh_quotes, "),
        ("refresh_quotes", "is not name=<seconds>s or name=off"),
        ("refresh_quotes=", "is not name=<seconds>s or name=off"),
        ("refresh_quotes=0s", "not a positive number of seconds"),
        ("refresh_quotes=5m", "not a positive number of seconds"),
        ("refresh_quotes=fast", "not a positive number of seconds"),
        ("refresh_quotes=5s,refresh_quotes=6s", "given twice"),
    ],
)
def test_bad_overrides_are_clear_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="LOCAL_SCHEDULE") as caught:
        parse_overrides(text, JOBS)
    assert reason in str(caught.value)


def test_scheduler_switch() -> None:
    assert scheduler_settings_from_env({}, JOBS).enabled
    assert not scheduler_settings_from_env({"LOCAL_SCHEDULER": "off"}, JOBS).enabled
    assert scheduler_settings_from_env({"LOCAL_SCHEDULER": "on", "LOCAL_SCHEDULE": "cleanup=off"}, JOBS).overrides == {
        "cleanup": None
    }
    with pytest.raises(ValueError, match="LOCAL_SCHEDULER must be on or off"):
        scheduler_settings_from_env({"LOCAL_SCHEDULER": "sometimes"}, JOBS)


def test_plan_uses_the_apps_expressions_unless_overridden() -> None:
    from infra.local.lambda_runtime import ScheduledFunction

    functions = [ScheduledFunction(name, expression, f"job_{name}") for name, expression in APP_DEFAULTS.items()]
    jobs = plan_jobs(functions, {"refresh_quotes": 5.0, "cleanup": None})
    described = [job.describe() for job in jobs]
    assert described == [
        "refresh_quotes every 5s",
        "refresh_indices every 120s",
        "refresh_market every 300s",
        "refresh_sentiment every 300s",
        "warm_cache every 21600s",
        "cleanup off",
    ]
    with pytest.raises(ValueError, match="unknown job"):
        plan_jobs(functions, {"nope": 1.0})
