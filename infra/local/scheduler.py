"""The local EventBridge: fires the app's `@app.schedule` functions at their schedules.

moto stores EventBridge rules but never fires them, so the local stack runs its own scheduler. For
each scheduled function (infra.local.lambda_runtime.schedule_handlers) it waits for the next fire
time of the function's schedule expression and invokes the handler through the gateway's Invoker
(the Lambda worker pool) with the event EventBridge sends. As on AWS:

- a `rate(...)` schedule fires every N from when the scheduler starts (EventBridge's rate rules count
  from the rule's creation); a `cron(...)` schedule fires at each matching minute, in UTC;
- the invocation is asynchronous: the scheduler never waits for a handler, so a slow run delays no
  other tick, and a tick that comes while the previous run is still going is delivered anyway (the
  app's own lock records it as skipped); a failed invocation is logged and changes nothing else.

Local overrides (read by `scheduler_settings_from_env`): `LOCAL_SCHEDULE=refresh_quotes=5s,cleanup=off`
replaces a job's schedule by a fixed period in seconds (from start, like a rate) or disables it;
`LOCAL_SCHEDULER=off` disables the scheduler entirely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from infra.local.gateway import Invoker, RouteRegistrar
from infra.local.lambda_runtime import ACCOUNT_ID, LambdaTimeout, ScheduledFunction

logger = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
RULE_PREFIX = "market-data-local-"
SHUTDOWN_GRACE_SECONDS = 5.0
SCHEDULE_ENV = "LOCAL_SCHEDULE"
SCHEDULER_ENV = "LOCAL_SCHEDULER"

# --- Schedule expressions (EventBridge's syntax). ---

_RATE = re.compile(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)", re.IGNORECASE)
_CRON = re.compile(r"cron\(([^()]*)\)", re.IGNORECASE)
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
# Not calendar.month_abbr: that follows the locale.
_MONTHS = {
    name: index
    for index, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_WEEKDAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}  # AWS: 1 = Sunday
_MIN_YEAR, _MAX_YEAR = 1970, 2199
# Last day (L, 5L, FRIL), nearest weekday (15W, LW), nth weekday (6#3, FRI#3): valid on AWS, not here.
_UNSUPPORTED = re.compile(r"L|LW|\d*W|\d+L|[A-Z]{3}L|[0-9A-Z]+#\d+")


@dataclass(frozen=True)
class RateSchedule:
    """Every `seconds`, counted from an anchor (the rule's creation; here the scheduler's start)."""

    seconds: float
    expression: str

    def next_fire(self, after: datetime, anchor: datetime | None = None) -> datetime:
        """The first anchor + k·period (k ≥ 1) strictly after `after`; the anchor defaults to `after`."""
        after = _utc(after)
        start = after if anchor is None else _utc(anchor)
        elapsed = (after - start).total_seconds()
        periods = max(1, math.floor(elapsed / self.seconds) + 1)
        return start + timedelta(seconds=periods * self.seconds)

    def describe(self) -> str:
        return f"every {self.seconds:g}s"


@dataclass(frozen=True)
class CronSchedule:
    """EventBridge's six-field cron, in UTC. `days_of_month` or `days_of_week` is None for `?`."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int] | None
    months: frozenset[int]
    days_of_week: frozenset[int] | None  # 1 = Sunday … 7 = Saturday
    years: frozenset[int]
    expression: str

    def matches_day(self, day: datetime) -> bool:
        if self.days_of_month is not None:
            return day.day in self.days_of_month
        return self.days_of_week is not None and aws_weekday(day) in self.days_of_week

    def next_fire(self, after: datetime, anchor: datetime | None = None) -> datetime:  # noqa: ARG002
        """The first matching minute strictly after `after`."""
        moment = _utc(after).replace(second=0, microsecond=0) + timedelta(minutes=1)
        while True:
            if moment.year > _MAX_YEAR:
                raise ValueError(f"schedule expression {self.expression!r} never fires after {after.isoformat()}")
            if moment.year not in self.years:
                moment = datetime(moment.year + 1, 1, 1, tzinfo=UTC)
            elif moment.month not in self.months:
                moment = _first_of_next_month(moment)
            elif not self.matches_day(moment):
                moment = datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0) + timedelta(hours=1)
            elif moment.minute not in self.minutes:
                moment += timedelta(minutes=1)
            else:
                return moment

    def describe(self) -> str:
        return self.expression


Schedule = RateSchedule | CronSchedule


def aws_weekday(day: datetime) -> int:
    """EventBridge's day-of-week number: 1 = Sunday … 7 = Saturday."""
    return (day.weekday() + 1) % 7 + 1


def parse_schedule(expression: str) -> Schedule:
    """A `rate(...)` or `cron(...)` EventBridge schedule expression; ValueError naming it otherwise."""
    text = expression.strip()
    if rate := _RATE.fullmatch(text):
        return _parse_rate(text, int(rate.group(1)), rate.group(2).lower())
    if cron := _CRON.fullmatch(text):
        return _parse_cron(text, cron.group(1))
    raise ValueError(f"schedule expression {expression!r} is neither rate(N unit) nor cron(6 fields)")


def next_fire(expression: str, after: datetime, anchor: datetime | None = None) -> datetime:
    """When `expression` next fires strictly after `after` (UTC; a naive datetime is taken as UTC).
    A rate counts from `anchor` (default: `after` itself, so the answer is after + the period)."""
    return parse_schedule(expression).next_fire(after, anchor)


def _parse_rate(expression: str, value: int, unit: str) -> RateSchedule:
    singular = unit.removesuffix("s")
    if singular not in _RATE_UNITS:
        raise ValueError(f"schedule expression {expression!r}: unit {unit!r} is not minute(s), hour(s) or day(s)")
    if value <= 0:
        raise ValueError(f"schedule expression {expression!r}: the rate must be a positive whole number")
    # EventBridge refuses rate(1 minutes) and rate(5 minute).
    if (value == 1) != (unit == singular):
        wanted = singular if value == 1 else singular + "s"
        raise ValueError(f"schedule expression {expression!r}: EventBridge wants {value} {wanted}")
    return RateSchedule(float(value * _RATE_UNITS[singular]), expression)


def _parse_cron(expression: str, body: str) -> CronSchedule:
    fields = body.split()
    if len(fields) != 6:
        raise ValueError(
            f"schedule expression {expression!r}: cron needs 6 fields "
            f"(minutes hours day-of-month month day-of-week year), got {len(fields)}"
        )
    minutes, hours, day_of_month, month, day_of_week, year = fields
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ValueError(f"schedule expression {expression!r}: exactly one of day-of-month and day-of-week must be '?'")

    def field(text: str, label: str, low: int, high: int, names: Mapping[str, int] | None = None) -> frozenset[int]:
        return _parse_field(expression, text, label, low, high, names or {})

    return CronSchedule(
        minutes=field(minutes, "minutes", 0, 59),
        hours=field(hours, "hours", 0, 23),
        days_of_month=None if day_of_month == "?" else field(day_of_month, "day-of-month", 1, 31),
        months=field(month, "month", 1, 12, _MONTHS),
        days_of_week=None if day_of_week == "?" else field(day_of_week, "day-of-week", 1, 7, _WEEKDAYS),
        years=field(year, "year", _MIN_YEAR, _MAX_YEAR),
        expression=expression,
    )


def _parse_field(
    expression: str, text: str, label: str, low: int, high: int, names: Mapping[str, int]
) -> frozenset[int]:
    def fail(reason: str) -> ValueError:
        return ValueError(f"schedule expression {expression!r}: {label} field {text!r}: {reason}")

    def number(token: str) -> int:
        upper = token.upper()
        if upper in names:
            return names[upper]
        if not token.isdigit():
            if _UNSUPPORTED.fullmatch(upper):
                raise fail("L, W and # are not supported by the local scheduler")
            raise fail(f"{token!r} is not a number" + (" or a name" if names else ""))
        value = int(token)
        if not low <= value <= high:
            raise fail(f"{value} is outside {low}-{high}")
        return value

    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise fail("empty list item")
        if part == "?":
            raise fail("'?' is only allowed as the whole day-of-month or day-of-week field")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise fail(f"step {step_text!r} is not a positive whole number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise fail(f"range {base!r} runs backwards")
        else:
            start = number(base)
            end = high if slash else start  # a/n: from a to the end of the field, every n
        values.update(range(start, end + 1, step))
    return frozenset(values)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _first_of_next_month(moment: datetime) -> datetime:
    if moment.month == 12:
        return datetime(moment.year + 1, 1, 1, tzinfo=UTC)
    return datetime(moment.year, moment.month + 1, 1, tzinfo=UTC)


# --- Local overrides. ---


@dataclass(frozen=True)
class SchedulerSettings:
    enabled: bool = True
    # Job name → period in seconds, or None: the job is off.
    overrides: Mapping[str, float | None] | None = None


_OFF_WORDS = frozenset({"off", "0", "false", "no", "disabled"})
_ON_WORDS = frozenset({"", "on", "1", "true", "yes", "enabled"})
_SECONDS = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*s?", re.IGNORECASE)


def parse_overrides(text: str, known: Sequence[str]) -> dict[str, float | None]:
    """`refresh_quotes=5s,refresh_indices=10s,cleanup=off` → {name: seconds | None (off)}."""
    overrides: dict[str, float | None] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        name, equals, value = (part.strip() for part in entry.partition("="))
        if not equals or not name or not value:
            raise ValueError(f"{SCHEDULE_ENV}: {entry!r} is not name=<seconds>s or name=off")
        if name not in known:
            raise ValueError(f"{SCHEDULE_ENV}: unknown job {name!r}; the jobs are {', '.join(known)}")
        if name in overrides:
            raise ValueError(f"{SCHEDULE_ENV}: job {name!r} is given twice")
        if value.lower() == "off":
            overrides[name] = None
            continue
        match = _SECONDS.fullmatch(value)
        seconds = float(match.group(1)) if match else 0.0
        if not 0 < seconds < float("inf"):
            raise ValueError(f"{SCHEDULE_ENV}: {name}={value!r} is not a positive number of seconds (like 5s) or off")
        overrides[name] = seconds
    return overrides


def scheduler_settings_from_env(env: Mapping[str, str], known: Sequence[str]) -> SchedulerSettings:
    """LOCAL_SCHEDULER (on/off) and LOCAL_SCHEDULE (per-job overrides); ValueError naming the variable."""
    switch = (env.get(SCHEDULER_ENV) or "").strip().lower()
    if switch not in _OFF_WORDS | _ON_WORDS:
        raise ValueError(f"{SCHEDULER_ENV} must be on or off, got {env.get(SCHEDULER_ENV)!r}")
    overrides = parse_overrides(env.get(SCHEDULE_ENV) or "", known)
    return SchedulerSettings(enabled=switch not in _OFF_WORDS, overrides=overrides)


# --- The scheduler. ---


@dataclass(frozen=True)
class ScheduledJob:
    """A scheduled function with the schedule it runs on locally (None: disabled by an override)."""

    function: ScheduledFunction
    schedule: Schedule | None

    @property
    def name(self) -> str:
        return self.function.name

    def describe(self) -> str:
        return f"{self.name} {'off' if self.schedule is None else self.schedule.describe()}"


def plan_jobs(
    functions: Sequence[ScheduledFunction], overrides: Mapping[str, float | None] | None = None
) -> list[ScheduledJob]:
    """Each function with its app schedule, or its override (a fixed period, or off)."""
    overrides = overrides or {}
    unknown = sorted(set(overrides) - {function.name for function in functions})
    if unknown:
        raise ValueError(f"{SCHEDULE_ENV}: unknown job(s) {', '.join(unknown)}")
    jobs = []
    for function in functions:
        schedule: Schedule | None
        if function.name in overrides:
            seconds = overrides[function.name]
            schedule = (
                None if seconds is None else RateSchedule(seconds, f"{SCHEDULE_ENV} {function.name}={seconds:g}s")
            )
        else:
            schedule = parse_schedule(function.expression)
        jobs.append(ScheduledJob(function, schedule))
    return jobs


def scheduled_event(name: str, *, region: str, account: str = ACCOUNT_ID, at: datetime) -> dict[str, Any]:
    """The event EventBridge sends a scheduled rule's Lambda target."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account,
        "time": _utc(at).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account}:rule/{RULE_PREFIX}{name}"],
        "detail": {},
    }


class LocalScheduler:
    """Fires each job's handler through `invoker` at its schedule, from `start()` until `stop()`."""

    def __init__(
        self,
        functions: Sequence[ScheduledFunction],
        invoker: Invoker,
        *,
        overrides: Mapping[str, float | None] | None = None,
        region: str = DEFAULT_REGION,
        account: str = ACCOUNT_ID,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.jobs = plan_jobs(functions, overrides)
        self._invoker = invoker
        self._region = region
        self._account = account
        self._clock = clock
        self._tickers: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._running = False

    def describe(self) -> str:
        """One line for the banner: every job and its schedule."""
        return ", ".join(job.describe() for job in self.jobs) or "no scheduled functions"

    @property
    def running(self) -> bool:
        return self._running

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        for job in self.jobs:
            if job.schedule is not None:
                self._tickers.append(
                    asyncio.create_task(self._tick(job, job.schedule, started), name=f"tick-{job.name}")
                )
        logger.info("scheduler started: %s", self.describe())

    async def stop(self, grace_seconds: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop ticking; give in-flight invocations up to `grace_seconds`, then abandon them."""
        if not self._running:
            return
        self._running = False
        for task in self._tickers:
            task.cancel()
        await asyncio.gather(*self._tickers, return_exceptions=True)
        self._tickers.clear()
        pending = set(self._in_flight)
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace_seconds)
            if still:
                logger.warning("scheduler: %d job invocation(s) still running at shutdown; abandoned", len(still))
                for task in still:
                    task.cancel()
                await asyncio.gather(*still, return_exceptions=True)
        logger.info("scheduler stopped")

    async def _tick(self, job: ScheduledJob, schedule: Schedule, started: float) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(schedule, RateSchedule):
            # Monotonic: start + k·period, skipping ticks missed while the loop was busy (as EventBridge does).
            period = schedule.seconds
            while True:
                due = started + (math.floor((loop.time() - started) / period) + 1) * period
                await asyncio.sleep(max(0.0, due - loop.time()))
                self._fire(job, self._clock())
        else:
            while True:
                due_at = schedule.next_fire(self._clock())
                # Wall-clock deadline: re-check after each sleep (sleeps are monotonic and may drift).
                while (remaining := (due_at - self._clock()).total_seconds()) > 0:
                    await asyncio.sleep(min(remaining, 60.0))
                self._fire(job, due_at)

    def _fire(self, job: ScheduledJob, at: datetime) -> None:
        event = scheduled_event(job.name, region=self._region, account=self._account, at=at)
        task = asyncio.create_task(self._invoke(job, event), name=f"job-{job.name}-{event['id']}")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _invoke(self, job: ScheduledJob, event: dict[str, Any]) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        handler = job.function.handler
        try:
            result = await self._invoker.invoke(event, handler=handler)
        except LambdaTimeout as exc:
            logger.error("job %s (%s, event %s): %s", job.name, handler, event["id"], exc)
        except Exception as exc:
            logger.error(
                "job %s (%s, event %s) failed: %s: %s",
                job.name,
                handler,
                event["id"],
                type(exc).__name__,
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
        else:
            status = result.get("status") if isinstance(result, dict) else None
            logger.info(
                "job %s (%s, event %s): %s in %.2fs",
                job.name,
                handler,
                event["id"],
                status or "returned",
                loop.time() - began,
            )


SCHEDULER = web.AppKey("local_scheduler", LocalScheduler)


def scheduler_registrar(scheduler: LocalScheduler) -> RouteRegistrar:
    """A gateway `build_app` registrar: the scheduler starts with the app and stops at its shutdown
    (callers that want in-flight jobs to still reach the gateway call `stop()` before that)."""

    def register(app: web.Application) -> None:
        app[SCHEDULER] = scheduler

        async def on_startup(_app: web.Application) -> None:
            await scheduler.start()

        async def on_shutdown(_app: web.Application) -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await scheduler.stop()

        app.on_startup.append(on_startup)
        app.on_shutdown.append(on_shutdown)

    return register
