"""JobRunner's policies on fakes (no DynamoDB, no Redis): every run recorded with its counts, an
overlapping run skipped (the lock is held), a duplicate delivery of one event doing no work, failures
recorded with a code and no detail. Over moto and Redis through the handlers: tests/app/test_jobs.py."""

from __future__ import annotations

from collections.abc import Callable

from chalicelib.errors import ServiceUnavailable
from chalicelib.ports import RunStatus
from chalicelib.services.jobs import JobContext, JobRunner, JobSpec, Trigger
from tests.fakes.cache import InMemoryCache
from tests.fakes.clock import FakeClock
from tests.fakes.job_runs import InMemoryJobRunStore

SPEC = JobSpec(name="refresh_quotes", expression="rate(1 minute)", interval_seconds=60, description="quotes")


def _nothing(_ctx: JobContext) -> None:
    return None


def _runner(body: Callable[[JobContext], None]) -> tuple[JobRunner, InMemoryJobRunStore, InMemoryCache, FakeClock]:
    clock = FakeClock()
    runs = InMemoryJobRunStore()
    locks = InMemoryCache(clock=clock)
    runner = JobRunner(
        specs=[SPEC],
        bodies={SPEC.name: body},
        runs=runs,
        locks=locks,
        retention_seconds=86_400,
        failing_after=3,
        clock=clock,
    )
    return runner, runs, locks, clock


def test_a_run_is_recorded_with_its_counts_and_outcome() -> None:
    runner, runs, _, clock = _runner(lambda ctx: ctx.add("symbols", 7))
    run = runner.run(SPEC.name, trigger=Trigger.SCHEDULE, event_id="evt-1")
    assert run.status is RunStatus.SUCCEEDED
    assert dict(run.counts) == {"symbols": 7}
    assert run.expires_at == int(clock.now) + 86_400
    assert runs.get(run.task_id, now=clock.now) == run
    assert runs.recent(SPEC.name, limit=5, now=clock.now) == [run]


def test_an_overlapping_run_is_skipped_and_recorded_as_skipped() -> None:
    runner, runs, locks, clock = _runner(_nothing)
    held = locks.acquire_lock(f"job:{SPEC.name}", SPEC.timeout_seconds)  # a run still in progress
    assert held is not None
    skipped = runner.run(SPEC.name, trigger=Trigger.SCHEDULE, event_id="evt-2")
    assert skipped.status is RunStatus.SKIPPED
    assert runs.get(skipped.task_id, now=clock.now) == skipped
    locks.release_lock(f"job:{SPEC.name}", held)
    assert runner.run(SPEC.name, trigger=Trigger.SCHEDULE, event_id="evt-3").status is RunStatus.SUCCEEDED


def test_a_duplicate_delivery_of_one_event_does_no_work() -> None:
    calls: list[int] = []
    runner, runs, _, clock = _runner(lambda _ctx: calls.append(1))
    first = runner.run(SPEC.name, trigger=Trigger.SCHEDULE, event_id="evt-dup")
    again = runner.run(SPEC.name, trigger=Trigger.SCHEDULE, event_id="evt-dup")
    assert calls == [1]
    assert again == first
    assert len(runs.recent(SPEC.name, limit=10, now=clock.now)) == 1


def test_manual_runs_get_their_own_task_ids() -> None:
    runner, runs, _, clock = _runner(_nothing)
    a = runner.run(SPEC.name, trigger=Trigger.MANUAL)
    b = runner.run(SPEC.name, trigger=Trigger.MANUAL)
    assert a.task_id != b.task_id
    assert {r.trigger for r in runs.recent(SPEC.name, limit=10, now=clock.now)} == {"manual"}


def test_a_failing_body_is_recorded_with_its_code_not_its_detail() -> None:
    def body(ctx: JobContext) -> None:
        ctx.add("symbols", 2)
        raise ServiceUnavailable("yahoo said: secret-ish detail")

    runner, runs, _, clock = _runner(body)
    run = runner.run(SPEC.name, trigger=Trigger.SCHEDULE, event_id="evt-4")
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "secret-ish" not in run.error
    assert dict(run.counts) == {"symbols": 2}
    assert runs.get(run.task_id, now=clock.now) == run


def test_a_crashing_body_is_recorded_as_an_internal_error_and_releases_the_lock() -> None:
    def body(ctx: JobContext) -> None:
        raise RuntimeError("bug")

    runner, _, locks, _ = _runner(body)
    run = runner.run(SPEC.name, trigger=Trigger.SCHEDULE, event_id="evt-5")
    assert run.status is RunStatus.FAILED
    assert run.error is not None
    assert "internal_error" in run.error
    assert locks.acquire_lock(f"job:{SPEC.name}", 1) is not None  # released after the run
