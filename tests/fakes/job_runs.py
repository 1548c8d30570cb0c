"""An in-memory JobRunStore: a conditional start (one run per task id), a finish that never creates a
run, reads filtered on ``expires_at`` (retention) and newest-first history, as DynamoDBJobRunStore.

Runs through the JobRunStore contract tests with DynamoDBJobRunStore (tests/contract/test_dynamodb_job_runs.py)."""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from datetime import UTC, datetime

from chalicelib.adapters.dynamodb_job_runs import ERROR_MAX_CHARS
from chalicelib.ports import JobRun


def _utc(moment: datetime | None) -> datetime | None:
    # Stored as UTC text by the real store: a naive time means UTC, an aware one is converted.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stored(run: JobRun) -> JobRun:
    started = _utc(run.started_at)
    assert started is not None  # a run always has a start
    return replace(
        run,
        started_at=started,
        finished_at=_utc(run.finished_at),
        counts=dict(run.counts),
        error=run.error[:ERROR_MAX_CHARS] if run.error is not None else None,
    )


class InMemoryJobRunStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, JobRun] = {}

    def start(self, run: JobRun) -> bool:
        with self._lock:
            if run.task_id in self._runs:
                return False  # a duplicate delivery: nothing written
            self._runs[run.task_id] = _stored(run)
            return True

    def finish(self, run: JobRun) -> None:
        with self._lock:
            current = self._runs.get(run.task_id)
            if current is None:
                return  # never started (or removed by retention): no bare run
            outcome = _stored(run)
            self._runs[run.task_id] = replace(
                current,
                status=outcome.status,
                finished_at=outcome.finished_at,
                duration_ms=outcome.duration_ms,
                counts=outcome.counts,
                error=outcome.error,
            )

    def get(self, task_id: str, *, now: float) -> JobRun | None:
        with self._lock:
            run = self._runs.get(task_id)
        return run if run is not None and run.expires_at > math.floor(now) else None

    def recent(self, job_name: str, *, limit: int, now: float) -> list[JobRun]:
        if limit < 1:
            return []
        with self._lock:
            live = [r for r in self._runs.values() if r.job_name == job_name and r.expires_at > math.floor(now)]
        return sorted(live, key=lambda r: r.started_at, reverse=True)[:limit]

    def delete_expired(self, *, now: float) -> int:
        with self._lock:
            expired = [task_id for task_id, r in self._runs.items() if r.expires_at <= math.floor(now)]
            for task_id in expired:
                del self._runs[task_id]
        return len(expired)
