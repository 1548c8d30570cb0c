"""The local EventBridge fires every scheduled function with EventBridge's event, on its own schedule,
without waiting for (or being stopped by) slow and failing invocations."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from infra.local.gateway import GatewayThread, build_app
from infra.local.lambda_runtime import ACCOUNT_ID, LambdaTimeout, RouteTable, ScheduledFunction, schedule_handlers
from infra.local.scheduler import LocalScheduler, scheduler_registrar

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
EVENT_KEYS = {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
ISO_SECONDS_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


class FakeInvoker:
    """Records every invocation; some handlers fail, hang for a while or time out."""

    def __init__(
        self,
        *,
        failing: frozenset[str] = frozenset(),
        slow: dict[str, float] | None = None,
        timing_out: frozenset[str] = frozenset(),
    ) -> None:
        self.calls: list[tuple[str | None, dict[str, Any], float]] = []
        self.finished: list[str | None] = []
        self.concurrent: dict[str | None, int] = {}
        self.max_concurrent: dict[str | None, int] = {}
        self._failing = failing
        self._slow = slow or {}
        self._timing_out = timing_out
        self._lock = threading.Lock()

    async def invoke(self, event: dict[str, Any], *, handler: str | None = None) -> dict[str, Any]:
        with self._lock:
            self.calls.append((handler, event, time.monotonic()))
            self.concurrent[handler] = self.concurrent.get(handler, 0) + 1
            self.max_concurrent[handler] = max(self.max_concurrent.get(handler, 0), self.concurrent[handler])
        try:
            if handler in self._slow:
                await asyncio.sleep(self._slow[handler])
            if handler in self._failing:
                raise RuntimeError(f"{handler} exploded")
            if handler in self._timing_out:
                raise LambdaTimeout("Task timed out after 30.00 seconds")
            return {"task_id": event["id"], "status": "succeeded", "counts": {}, "error": None}
        finally:
            with self._lock:
                self.concurrent[handler] -= 1
                self.finished.append(handler)

    def handlers(self) -> list[str | None]:
        return [handler for handler, _, _ in self.calls]

    def count(self, handler: str) -> int:
        return self.handlers().count(handler)


@pytest.fixture(scope="module")
def functions() -> list[ScheduledFunction]:
    """The app's own scheduled functions, as run.py reads them."""
    found = schedule_handlers()
    assert [function.name for function in found] == [
        "refresh_quotes",
        "refresh_indices",
        "refresh_market",
        "refresh_sentiment",
        "warm_cache",
        "cleanup",
    ]
    return found


@pytest.fixture
def info_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="infra.local.scheduler"):
        yield caplog


@pytest.mark.timeout(20)
def test_each_job_fires_on_its_period_with_eventbridges_event_despite_slow_and_failing_runs(
    functions: list[ScheduledFunction], info_logs: pytest.LogCaptureFixture
) -> None:
    invoker = FakeInvoker(
        failing=frozenset({"job_refresh_indices"}),
        slow={"job_refresh_market": 0.35},
        timing_out=frozenset({"job_refresh_sentiment"}),
    )
    overrides: dict[str, float | None] = {
        "refresh_quotes": 0.1,
        "refresh_indices": 0.1,
        "refresh_market": 0.1,
        "refresh_sentiment": 0.15,
        "warm_cache": None,
        "cleanup": None,
    }
    scheduler = LocalScheduler(functions, invoker, overrides=overrides, region=REGION)
    assert scheduler.describe() == (
        "refresh_quotes every 0.1s, refresh_indices every 0.1s, refresh_market every 0.1s, "
        "refresh_sentiment every 0.15s, warm_cache off, cleanup off"
    )

    async def scenario() -> float:
        await scheduler.start()
        started = time.monotonic()
        await asyncio.sleep(0.6)
        await scheduler.stop(grace_seconds=2.0)
        stopped = time.monotonic()
        calls_at_stop = len(invoker.calls)
        await asyncio.sleep(0.2)
        assert len(invoker.calls) == calls_at_stop, "the scheduler kept firing after stop()"
        return stopped - started

    elapsed = asyncio.run(scenario())

    # Every enabled job ticked on its own period: ~6 ticks of 0.1 s in 0.6 s, ~4 of 0.15 s.
    assert invoker.count("job_refresh_quotes") >= 4
    assert invoker.count("job_refresh_indices") >= 4  # every one of them raised
    assert invoker.count("job_refresh_market") >= 4  # each runs 0.35 s: ticks came while others ran
    assert invoker.count("job_refresh_sentiment") >= 2  # every one of them timed out
    assert invoker.max_concurrent["job_refresh_market"] >= 3
    # Disabled jobs never fire.
    assert "job_warm_cache" not in invoker.handlers()
    assert "job_cleanup" not in invoker.handlers()
    # The slow runs in flight at stop() were given their grace and finished.
    assert len(invoker.finished) == len(invoker.calls)
    assert elapsed < 0.6 + 0.35 + 0.3

    ids = set()
    for handler, event, _ in invoker.calls:
        assert set(event) == EVENT_KEYS
        name = str(handler).removeprefix("job_")
        assert event["version"] == "0"
        assert event["detail-type"] == "Scheduled Event"
        assert event["source"] == "aws.events"
        assert event["account"] == ACCOUNT_ID
        assert event["region"] == REGION
        assert event["resources"] == [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/market-data-local-{name}"]
        assert event["detail"] == {}
        assert ISO_SECONDS_Z.fullmatch(event["time"]), event["time"]
        ids.add(event["id"])
    assert len(ids) == len(invoker.calls), "event ids must be unique"

    # A steady rhythm: the slow job's ticks were not held back by its own runs.
    market_times = [at for handler, _, at in invoker.calls if handler == "job_refresh_market"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(market_times)]
    assert max(gaps) < 0.3

    # One log line per invocation, with the job and the handler's status (or what went wrong).
    messages = [record.getMessage() for record in info_logs.records]
    assert sum("job refresh_quotes " in m and "succeeded" in m for m in messages) == invoker.count("job_refresh_quotes")
    assert any("job refresh_indices " in m and "RuntimeError: job_refresh_indices exploded" in m for m in messages)
    assert any("job refresh_sentiment " in m and "Task timed out" in m for m in messages)
    assert not any("Traceback" in m for m in messages)


@pytest.mark.timeout(20)
def test_shutdown_grace_is_bounded(functions: list[ScheduledFunction], info_logs: pytest.LogCaptureFixture) -> None:
    invoker = FakeInvoker(slow={"job_refresh_quotes": 30.0})
    overrides = dict.fromkeys(["refresh_indices", "refresh_market", "refresh_sentiment", "warm_cache", "cleanup"])
    scheduler = LocalScheduler(functions, invoker, overrides={**overrides, "refresh_quotes": 0.05})

    async def scenario() -> float:
        await scheduler.start()
        await asyncio.sleep(0.2)
        assert scheduler.in_flight >= 2
        began = time.monotonic()
        await scheduler.stop(grace_seconds=0.2)
        assert scheduler.in_flight == 0
        assert not scheduler.running
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 1.0
    assert invoker.count("job_refresh_quotes") >= 2
    assert any("still running at shutdown" in record.getMessage() for record in info_logs.records)


@pytest.mark.timeout(20)
def test_the_registrar_starts_and_stops_the_scheduler_with_the_gateway(functions: list[ScheduledFunction]) -> None:
    invoker = FakeInvoker()
    overrides = dict.fromkeys(["refresh_market", "refresh_sentiment", "warm_cache", "cleanup"])
    scheduler = LocalScheduler(
        functions, invoker, overrides={**overrides, "refresh_quotes": 0.1, "refresh_indices": 0.1}
    )
    app = build_app(RouteTable(()), invoker, registrars=[scheduler_registrar(scheduler)])
    with GatewayThread(app) as gateway:
        assert scheduler.running
        # The gateway still serves while the scheduler runs (its catch-all answers 404 here).
        assert requests.get(f"{gateway.url}/nothing", timeout=5).status_code == 404
        time.sleep(0.35)
    assert not scheduler.running
    fired = len(invoker.calls)
    assert invoker.count("job_refresh_quotes") >= 2
    assert invoker.count("job_refresh_indices") >= 2
    assert set(invoker.handlers()) == {"job_refresh_quotes", "job_refresh_indices"}
    time.sleep(0.15)
    assert len(invoker.calls) == fired
