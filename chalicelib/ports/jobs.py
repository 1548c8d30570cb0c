"""Scheduled jobs' run records (DynamoDB in AWS) and the sharded fan-out's worker dispatch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class JobRun:
    """One run of one job, as recorded (and served by /jobs/{task_id})."""

    task_id: str
    job_name: str
    trigger: str  # "schedule" or "manual"
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    event_id: str | None = None  # the EventBridge event id (schedule triggers): duplicate deliveries share it
    expires_at: int = 0  # epoch seconds; the table's TTL attribute (retention), filtered on read


class JobRunStore(Protocol):
    def start(self, run: JobRun) -> bool:
        """Record a new run (status running or skipped). False when a run with this task id already exists
        (a duplicate delivery of the same event): nothing is written then."""
        ...

    def finish(self, run: JobRun) -> None:
        """Overwrite the run's outcome (status, finished_at, duration, counts, error)."""
        ...

    def get(self, task_id: str, *, now: float) -> JobRun | None: ...

    def recent(self, job_name: str, *, limit: int, now: float) -> list[JobRun]:
        """The job's latest runs, newest first: one Query on the by-job index (job_name, started_at)."""
        ...

    def delete_expired(self, *, now: float) -> int:
        """Remove runs past their retention (DynamoDB's TTL deletes late); returns how many went."""
        ...


# --- sharded fan-out: one asynchronous worker invocation per shard of a publish round ---------------


@dataclass(frozen=True)
class ShardTask:
    """One worker invocation: deliver round ``round_id``'s changed values to the connections of ``shard``."""

    round_id: str
    shard: int


@dataclass(frozen=True)
class DispatchReport:
    dispatched: int
    failed: tuple[int, ...]  # shards whose invocation could not be queued


class ShardDispatcher(Protocol):
    def dispatch(self, tasks: Sequence[ShardTask]) -> DispatchReport:
        """Queue one asynchronous worker invocation per task; never raises for a failed invocation."""
        ...
