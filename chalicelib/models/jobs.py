"""Job runs and job health, as /api/v1/market/jobs/* serves them."""

from __future__ import annotations

from enum import StrEnum

from pydantic import AwareDatetime, Field

from chalicelib.models.market import MarketModel
from chalicelib.ports import JobRun


class JobHealth(StrEnum):
    HEALTHY = "healthy"
    LATE = "late"  # no run for more than two intervals (plus a minute)
    FAILING = "failing"  # the last N runs failed


class JobRunResponse(MarketModel):
    task_id: str
    job_name: str
    trigger: str = Field(description="schedule or manual")
    status: str = Field(description="running, succeeded, failed or skipped")
    started_at: AwareDatetime
    finished_at: AwareDatetime | None
    duration_ms: int | None
    counts: dict[str, int] = Field(description="what the run did: symbols refreshed, upstream calls, messages sent...")
    error: str | None

    @classmethod
    def of(cls, run: JobRun) -> JobRunResponse:
        # The record's fields by name (the store's own, event_id and expires_at, are not served).
        return cls.model_validate(run, from_attributes=True)


class JobStatus(MarketModel):
    name: str
    schedule: str = Field(description="the EventBridge schedule expression")
    description: str
    interval_seconds: int
    last_run: JobRunResponse | None
    last_success_at: AwareDatetime | None
    next_expected_run: AwareDatetime | None
    consecutive_failures: int
    health: JobHealth


class JobsStatusResponse(MarketModel):
    jobs: list[JobStatus]
    as_of: AwareDatetime
