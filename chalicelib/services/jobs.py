"""Scheduled jobs (EventBridge → Lambda, replacing Celery beat): what each does, and how every run is
guarded and recorded.

Every run, whatever triggered it:
1. gets a task id. A scheduled run's id is derived from the EventBridge event id, so a duplicate
   delivery (EventBridge delivers at least once; Lambda retries async invocations) maps onto the same
   id: the conditional write of the run record fails and the duplicate does no work.
2. takes the job's lock (Redis, with expiry: a crashed run cannot hold it forever). A second trigger
   while one runs is recorded as ``skipped``.
3. runs the body within the invocation's remaining time (minus a margin), then records ``succeeded``
   with its counts, or ``failed`` with the error. A run that never finished (its Lambda was killed)
   shows as failed in /jobs/status once its timeout has passed.

The bodies are in job_bodies.py; the schedules (and their overrides) in job_schedules.py.
"""

from __future__ import annotations

import dataclasses
import re
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from chalicelib import observability
from chalicelib.errors import AppError, NotFound, ValidationFailed
from chalicelib.models.jobs import JobHealth, JobRunResponse, JobsStatusResponse, JobStatus
from chalicelib.ports import Cache, JobRun, JobRunStore, RunStatus

if TYPE_CHECKING:  # annotation only: the jobs' runner must not import the streaming service for the REST routes
    from chalicelib.services.streaming import PublishReport

logger = observability.logger

# uuid5 namespace for task ids derived from EventBridge event ids (any fixed UUID would do).
_TASK_NAMESPACE = uuid.UUID("6f1d8a52-3c1e-4f7b-9a57-2b8f0f6c9d41")
# A UUID in its canonical 8-4-4-4-12 hex form, either case (the OpenAPI document declares this pattern).
TASK_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_TASK_ID = re.compile(TASK_ID_PATTERN)
DEADLINE_MARGIN_SECONDS = 3.0


class Trigger(StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"


@dataclass(frozen=True)
class JobSpec:
    name: str
    expression: str  # the EventBridge schedule expression
    interval_seconds: int  # how often it is expected to run (for "late" and "next expected run")
    description: str
    timeout_seconds: int = 120  # the function's timeout: a "running" record older than this crashed


@dataclass
class JobContext:
    """What a job body gets: its deadline and a place to count what it did."""

    deadline: float  # monotonic
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, value: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + value

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def add_publish(self, report: PublishReport) -> None:
        """What the round did from here: shard workers started (their own sends are counted by them:
        FanoutSent and /ws/stats), or, delivered inline, the messages themselves."""
        self.add("fanout_shards", report.shards)
        self.add("fanout_dispatch_failed", report.dispatch_failed)
        self.add("messages_sent", report.sent)
        self.add("gone_connections", report.gone)
        self.add("messages_failed", report.failed)
        self.add("unchanged", report.unchanged)


JobBody = Callable[[JobContext], None]


def task_id_for(job_name: str, event_id: str | None) -> str:
    """Deterministic for a scheduled event (duplicates collide); random for a manual trigger."""
    if event_id:
        return str(uuid.uuid5(_TASK_NAMESPACE, f"{job_name}:{event_id}"))
    return str(uuid.uuid4())


def check_task_id(task_id: str) -> str:
    """The task id as stored (lower case); fullmatch, because `$` would let a trailing newline through."""
    if not _TASK_ID.fullmatch(task_id):
        raise ValidationFailed("task_id must be a UUID like 3f2b6c1e-8d4a-4b6e-9c1d-2a7e5f8b9c0d")
    return task_id.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class JobRunner:
    specs: Sequence[JobSpec]
    bodies: Mapping[str, JobBody]
    runs: JobRunStore
    locks: Cache
    retention_seconds: int
    failing_after: int
    clock: Callable[[], float] = time.time

    def _named(self, name: str) -> JobSpec | None:
        return next((spec for spec in self.specs if spec.name == name), None)

    def spec(self, name: str) -> JobSpec:
        spec = self._named(name)
        if spec is None:
            raise NotFound(f"no job named {name[:40]!r}; jobs: {', '.join(s.name for s in self.specs)}")
        return spec

    def run(self, name: str, *, trigger: Trigger, event_id: str | None = None, deadline: float | None = None) -> JobRun:
        spec = self.spec(name)
        task_id = task_id_for(name, event_id)
        started = self.clock()
        # The run record's conditional write is what tells a duplicate delivery (same event id, same task
        # id) apart: whether the first delivery still runs (the lock is held) or has finished.
        lock = self.locks.acquire_lock(f"job:{name}", spec.timeout_seconds)
        if lock is None:
            skipped = self._record(spec, task_id, trigger, event_id, RunStatus.SKIPPED, started)
            if self.runs.start(skipped):
                observability.count("JobSkipped", dimensions={"job": name})
                return skipped
            return self._duplicate(task_id, name, skipped)
        try:
            run = self._record(spec, task_id, trigger, event_id, RunStatus.RUNNING, started)
            if not self.runs.start(run):
                return self._duplicate(task_id, name, run)
            return self._execute(spec, run, deadline)
        finally:
            self.locks.release_lock(f"job:{name}", lock)

    def _duplicate(self, task_id: str, name: str, fallback: JobRun) -> JobRun:
        """The run already recorded under this task id (the first delivery's), doing no work."""
        logger.info("duplicate delivery ignored", extra={"job": name, "task_id": task_id})
        observability.count("JobDuplicate", dimensions={"job": name})
        return self.runs.get(task_id, now=self.clock()) or fallback

    def _execute(self, spec: JobSpec, run: JobRun, deadline: float | None) -> JobRun:
        budget = deadline if deadline is not None else time.monotonic() + spec.timeout_seconds
        # Keep a margin to record the outcome before the function's timeout: 3 s, or a tenth of a short budget.
        margin = min(DEADLINE_MARGIN_SECONDS, max(0.0, budget - time.monotonic()) * 0.1)
        context = JobContext(deadline=budget - margin)
        began = time.monotonic()
        status, error = RunStatus.SUCCEEDED, None
        try:
            self.bodies[spec.name](context)
        except AppError as exc:
            # The record (served by /jobs) holds a code and a fixed message; the detail goes to the logs.
            status, error = RunStatus.FAILED, _recorded_error(exc.code)
            logger.error("job failed", extra={"job": spec.name, "task_id": run.task_id, "error": exc.message})
        except Exception:
            status, error = RunStatus.FAILED, _recorded_error("internal_error")
            logger.error(
                "job crashed",
                extra={"job": spec.name, "task_id": run.task_id, "traceback": traceback.format_exc(limit=8)},
            )
        except BaseException:
            # The runtime's own timeout (locally) or an interpreter exit: record, then let it unwind.
            self._finish(run, RunStatus.FAILED, context, began, "interrupted (timed out)")
            raise
        return self._finish(run, status, context, began, error)

    def _finish(self, run: JobRun, status: RunStatus, context: JobContext, began: float, error: str | None) -> JobRun:
        finished = dataclasses.replace(
            run,
            status=status,
            finished_at=datetime.fromtimestamp(self.clock(), UTC),
            duration_ms=int((time.monotonic() - began) * 1000),
            counts=dict(context.counts),
            error=error[:1000] if error else None,
        )
        self.runs.finish(finished)
        observability.count("JobRun", dimensions={"job": run.job_name, "status": status.value})
        observability.milliseconds("JobDuration", finished.duration_ms or 0, dimensions={"job": run.job_name})
        logger.info(
            "job finished",
            extra={"job": run.job_name, "task_id": run.task_id, "status": status.value, "counts": context.counts},
        )
        return finished

    def _record(
        self, spec: JobSpec, task_id: str, trigger: Trigger, event_id: str | None, status: RunStatus, at: float
    ) -> JobRun:
        moment = datetime.fromtimestamp(at, UTC)
        return JobRun(
            task_id=task_id,
            job_name=spec.name,
            trigger=trigger.value,
            status=status,
            started_at=moment,
            finished_at=moment if status is RunStatus.SKIPPED else None,
            duration_ms=0 if status is RunStatus.SKIPPED else None,
            event_id=event_id,
            expires_at=int(at) + self.retention_seconds,
        )

    # --- reading ----------------------------------------------------------------------------------

    def get(self, task_id: str) -> JobRunResponse:
        run = self.runs.get(check_task_id(task_id), now=self.clock())
        if run is None:
            raise NotFound(f"no job run {task_id} (unknown, or past its retention)")
        spec = self._named(run.job_name)
        return JobRunResponse.of(self._effective(run, spec))

    def _effective(self, run: JobRun, spec: JobSpec | None) -> JobRun:
        """A run still 'running' past its function's timeout was killed: it failed."""
        if (
            run.status is RunStatus.RUNNING
            and spec is not None
            and self.clock() > run.started_at.timestamp() + spec.timeout_seconds + DEADLINE_MARGIN_SECONDS
        ):
            return dataclasses.replace(run, status=RunStatus.FAILED, error="did not finish (killed)")
        return run

    def status(self) -> JobsStatusResponse:
        now = self.clock()
        jobs = []
        for spec in self.specs:
            runs = [self._effective(r, spec) for r in self.runs.recent(spec.name, limit=20, now=now)]
            done = [r for r in runs if r.status is not RunStatus.SKIPPED]
            last = done[0] if done else None
            last_success = next((r for r in done if r.status is RunStatus.SUCCEEDED), None)
            consecutive = 0
            for run in done:
                if run.status is not RunStatus.FAILED:
                    break
                consecutive += 1
            expected = last.started_at + timedelta(seconds=spec.interval_seconds) if last else None
            if consecutive >= self.failing_after:
                health = JobHealth.FAILING
            elif last is None or now > last.started_at.timestamp() + 2 * spec.interval_seconds + 60:
                health = JobHealth.LATE
            else:
                health = JobHealth.HEALTHY
            jobs.append(
                JobStatus(
                    name=spec.name,
                    schedule=spec.expression,
                    description=spec.description,
                    interval_seconds=spec.interval_seconds,
                    last_run=JobRunResponse.of(last) if last else None,
                    last_success_at=last_success.started_at if last_success else None,
                    next_expected_run=expected,
                    consecutive_failures=consecutive,
                    health=health,
                )
            )
        return JobsStatusResponse(jobs=jobs, as_of=datetime.fromtimestamp(now, UTC))


# What a failed run records, per error code: a safe sentence (never exception or vendor text).
_SAFE_ERROR_MESSAGES = {
    "service_unavailable": "no data source could serve the job",
    "store_unavailable": "the connection store could not be reached",
    "configuration_error": "the service is misconfigured",
    "internal_error": "the job crashed",
}


def _recorded_error(code: str) -> str:
    message = _SAFE_ERROR_MESSAGES.get(code, "the job failed")
    return f"{code}: {message}; the detail is in the job's log (search the task id)"
