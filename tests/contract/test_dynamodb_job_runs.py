"""The JobRunStore contract: DynamoDBJobRunStore against moto (in-process), on the table created from
infra/template.yaml, and the InMemoryJobRunStore fake through every test that does not look at DynamoDB
itself (``store`` is parametrised over both; ``real_store`` is the DynamoDB adapter alone)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.adapters.dynamodb_job_runs import DynamoDBJobRunStore
from chalicelib.errors import StoreUnavailable
from chalicelib.ports import JobRun, JobRunStore, RunStatus
from tests.fakes.dynamodb import LOCAL_TABLES, RecordingClient, table_fixtures, unreachable_client
from tests.fakes.job_runs import InMemoryJobRunStore

_EXPRESSION_TOKEN = re.compile(
    r"(?:\s*(?:#[a-z_]+|:[a-z_]+|,|=|<=|>|\(|\)|AND|SET|REMOVE|attribute_exists|attribute_not_exists))+"
)

NOW = 1_700_000_000.5
LATER = 1_700_003_600  # an hour after NOW: kept
PAST = 1_699_999_000  # before NOW: expired
STARTED = datetime(2023, 11, 14, 22, 0, 0, tzinfo=UTC)
JOB_RUNS = LOCAL_TABLES["JobRunsTable"]


dynamodb, recorder = table_fixtures(JOB_RUNS)


def _store(client: Any, **kwargs: Any) -> DynamoDBJobRunStore:
    kwargs.setdefault("sleep", lambda _seconds: None)
    return DynamoDBJobRunStore(client, JOB_RUNS, **kwargs)


@pytest.fixture
def real_store(recorder: RecordingClient) -> DynamoDBJobRunStore:
    return _store(recorder)


@pytest.fixture(params=["dynamodb", "in_memory"])
def store(request: pytest.FixtureRequest) -> JobRunStore:
    if request.param == "in_memory":
        return InMemoryJobRunStore()
    real: DynamoDBJobRunStore = request.getfixturevalue("real_store")
    return real


def _run(
    task_id: str,
    job_name: str = "refresh_quotes",
    *,
    started_at: datetime = STARTED,
    expires_at: int = LATER,
    **kwargs: Any,
) -> JobRun:
    return JobRun(
        task_id=task_id,
        job_name=job_name,
        trigger=kwargs.pop("trigger", "schedule"),
        status=kwargs.pop("status", RunStatus.RUNNING),
        started_at=started_at,
        expires_at=expires_at,
        **kwargs,
    )


def _raw(dynamodb: Any, task_id: str) -> dict[str, Any]:
    item: dict[str, Any] = dynamodb.get_item(TableName=JOB_RUNS, Key={"task_id": {"S": task_id}})["Item"]
    return item


def test_it_implements_the_port(store: JobRunStore) -> None:
    port: JobRunStore = store  # mypy checks the structure
    assert port is store


# --- start / get ----------------------------------------------------------------------------------


def test_start_then_get_round_trips_every_field(real_store: DynamoDBJobRunStore, dynamodb: Any) -> None:
    run = _run(
        "t1",
        status=RunStatus.SUCCEEDED,
        started_at=datetime(2026, 12, 1, 18, 0, 0, 123456, tzinfo=UTC),
        finished_at=datetime(2026, 12, 1, 18, 0, 1, tzinfo=UTC),
        duration_ms=877,
        counts={"symbols": 42, "published": 0},
        error="partial: yahoo timed out",
        event_id="evt-1",
        trigger="manual",
    )

    assert real_store.start(run) is True

    got = real_store.get("t1", now=NOW)
    assert got == run
    assert got.started_at.utcoffset() == timedelta(0)
    assert got.finished_at is not None
    assert got.finished_at.utcoffset() == timedelta(0)
    item = _raw(dynamodb, "t1")
    assert item["started_at"] == {"S": "2026-12-01T18:00:00.123456+00:00"}
    assert item["finished_at"] == {"S": "2026-12-01T18:00:01.000000+00:00"}  # fixed width: it sorts
    assert item["duration_ms"] == {"N": "877"}
    assert item["counts"] == {"M": {"symbols": {"N": "42"}, "published": {"N": "0"}}}
    assert item["expires_at"] == {"N": str(LATER)}
    assert item["status"] == {"S": "succeeded"}


def test_none_attributes_are_omitted(real_store: DynamoDBJobRunStore, dynamodb: Any) -> None:
    assert real_store.start(_run("t1")) is True

    item = _raw(dynamodb, "t1")
    assert set(item) == {"task_id", "job_name", "trigger", "status", "started_at", "counts", "expires_at"}
    got = real_store.get("t1", now=NOW)
    assert got == _run("t1")
    assert got is not None
    assert (got.finished_at, got.duration_ms, got.error, got.event_id, dict(got.counts)) == (None, None, None, None, {})


def test_started_at_is_stored_in_utc(real_store: DynamoDBJobRunStore, dynamodb: Any) -> None:
    paris = timezone(timedelta(hours=1))
    real_store.start(_run("aware", started_at=datetime(2023, 11, 14, 23, 0, 0, tzinfo=paris)))
    real_store.start(_run("naive", started_at=datetime(2023, 11, 14, 22, 0, 0)))  # naive means UTC

    for task_id in ("aware", "naive"):
        assert _raw(dynamodb, task_id)["started_at"] == {"S": "2023-11-14T22:00:00.000000+00:00"}
        got = real_store.get(task_id, now=NOW)
        assert got is not None
        assert got.started_at == STARTED
        assert got.started_at.utcoffset() == timedelta(0)


def test_get_is_one_consistent_read(real_store: DynamoDBJobRunStore, recorder: RecordingClient) -> None:
    real_store.start(_run("t1"))
    recorder.calls.clear()

    assert real_store.get("t1", now=NOW) is not None
    assert recorder.operations() == ["get_item"]
    assert recorder.calls[0][1]["ConsistentRead"] is True


def test_unknown_and_expired_runs_are_none(store: JobRunStore) -> None:
    store.start(_run("old", expires_at=PAST))
    store.start(_run("edge", expires_at=int(NOW)))  # expires_at <= now: expired

    assert store.get("nope", now=NOW) is None
    assert store.get("old", now=NOW) is None
    assert store.get("edge", now=NOW) is None
    assert store.get("old", now=PAST - 1) is not None


def test_long_errors_are_truncated(store: JobRunStore) -> None:
    store.start(_run("t1", error="x" * 5_000))
    got = store.get("t1", now=NOW)
    assert got is not None
    assert got.error == "x" * 1_000

    store.finish(replace(_run("t1"), status=RunStatus.FAILED, error="y" * 1_001))
    got = store.get("t1", now=NOW)
    assert got is not None
    assert got.error == "y" * 1_000


def test_a_duplicate_start_returns_false_and_writes_nothing(
    real_store: DynamoDBJobRunStore, recorder: RecordingClient
) -> None:
    first = _run("t1", event_id="evt-1", counts={"a": 1})
    assert real_store.start(first) is True

    duplicate = _run("t1", "other_job", status=RunStatus.SKIPPED, event_id="evt-2", expires_at=LATER + 5)
    assert real_store.start(duplicate) is False

    assert real_store.get("t1", now=NOW) == first
    put = [params for name, params in recorder.calls if name == "put_item"]
    assert put[-1]["ConditionExpression"] == "attribute_not_exists(#task_id)"


# --- finish ---------------------------------------------------------------------------------------


def test_finish_overwrites_the_outcome_and_removes_the_error(real_store: DynamoDBJobRunStore, dynamodb: Any) -> None:
    running = _run("t1", event_id="evt-1", counts={"symbols": 3}, error="retrying")
    real_store.start(running)

    failed = replace(
        running,
        status=RunStatus.FAILED,
        finished_at=STARTED + timedelta(seconds=2),
        duration_ms=2_000,
        counts={"symbols": 3, "failed": 3},
        error="boom",
    )
    real_store.finish(failed)
    assert real_store.get("t1", now=NOW) == failed

    succeeded = replace(failed, status=RunStatus.SUCCEEDED, duration_ms=2_500, counts={"published": 7}, error=None)
    real_store.finish(succeeded)

    assert real_store.get("t1", now=NOW) == succeeded
    item = _raw(dynamodb, "t1")
    assert "error" not in item
    assert item["counts"] == {"M": {"published": {"N": "7"}}}  # replaced, not merged
    assert item["event_id"] == {"S": "evt-1"}  # what finish does not own stays


def test_finish_of_an_unknown_run_creates_nothing(real_store: DynamoDBJobRunStore, dynamodb: Any) -> None:
    real_store.finish(_run("ghost", status=RunStatus.SUCCEEDED, finished_at=STARTED, duration_ms=1))

    assert dynamodb.scan(TableName=JOB_RUNS)["Items"] == []


def test_the_outcome_is_replaced_a_duplicate_changes_nothing_and_unknown_runs_stay_unknown(store: JobRunStore) -> None:
    """What the DynamoDB-only tests above check at the item level, through the port alone."""
    running = _run("t1", event_id="evt-1", counts={"symbols": 3}, error="retrying")
    assert store.start(running) is True
    assert store.start(_run("t1", "other_job", status=RunStatus.SKIPPED)) is False
    assert store.get("t1", now=NOW) == running
    done = replace(running, status=RunStatus.SUCCEEDED, finished_at=STARTED, duration_ms=5, counts={"p": 1}, error=None)
    store.finish(done)
    assert store.get("t1", now=NOW) == done
    store.finish(_run("ghost", status=RunStatus.SUCCEEDED))
    assert store.get("ghost", now=NOW) is None
    paris = timezone(timedelta(hours=1))
    store.start(_run("aware", started_at=datetime(2023, 11, 14, 23, 0, 0, tzinfo=paris)))
    aware = store.get("aware", now=NOW)
    assert aware is not None
    assert aware.started_at == STARTED
    assert aware.started_at.utcoffset() == timedelta(0)


def test_delete_expired_removes_exactly_the_expired_runs(store: JobRunStore) -> None:
    for i in range(3):
        store.start(_run(f"old{i}", expires_at=PAST))
    store.start(_run("kept"))
    assert store.delete_expired(now=NOW) == 3
    assert store.delete_expired(now=NOW) == 0
    assert [r.task_id for r in store.recent("refresh_quotes", limit=10, now=PAST - 10)] == ["kept"]


# --- recent ---------------------------------------------------------------------------------------


def _history(store: JobRunStore) -> list[str]:
    """Ten runs of refresh_quotes a minute apart (r00 oldest), one expired among the newest, and
    runs of another job; returns the live refresh_quotes task ids, newest first."""
    for i in range(10):
        store.start(_run(f"r{i:02d}", started_at=STARTED + timedelta(minutes=i)))
    store.start(_run("expired", started_at=STARTED + timedelta(minutes=8, seconds=30), expires_at=PAST))
    for i in range(5):
        store.start(_run(f"o{i}", "refresh_indices", started_at=STARTED + timedelta(minutes=20 + i)))
    return [f"r{i:02d}" for i in reversed(range(10))]


def test_recent_is_newest_first_limited_and_filtered(store: JobRunStore) -> None:
    live = _history(store)

    runs = store.recent("refresh_quotes", limit=3, now=NOW)

    assert [r.task_id for r in runs] == live[:3]
    assert [r.started_at for r in runs] == sorted((r.started_at for r in runs), reverse=True)
    assert store.recent("refresh_quotes", limit=100, now=NOW) == [store.get(t, now=NOW) for t in live]
    assert [r.task_id for r in store.recent("refresh_indices", limit=2, now=NOW)] == ["o4", "o3"]
    assert store.recent("nobody", limit=5, now=NOW) == []
    assert store.recent("refresh_quotes", limit=0, now=NOW) == []


def test_recent_is_one_query_on_the_by_job_index(real_store: DynamoDBJobRunStore, recorder: RecordingClient) -> None:
    _history(real_store)
    recorder.calls.clear()

    real_store.recent("refresh_quotes", limit=1, now=NOW)

    assert recorder.operations() == ["query"]
    params = recorder.calls[0][1]
    assert params["IndexName"] == "by-job"
    assert params["ScanIndexForward"] is False
    assert params["FilterExpression"] == "#expires_at > :now"


def test_recent_follows_pages_only_until_the_limit_is_reached(recorder: RecordingClient) -> None:
    store = _store(recorder, page_size=2)
    live = _history(store)
    recorder.calls.clear()

    runs = store.recent("refresh_quotes", limit=5, now=NOW)

    # Pages of 2: r09 expired | r08 r07 | r06 r05. The filtered item cost one more page, no more.
    assert [r.task_id for r in runs] == live[:5]
    assert recorder.operations() == ["query"] * 3
    assert "ExclusiveStartKey" in recorder.calls[-1][1]


# --- delete_expired -------------------------------------------------------------------------------


def test_delete_expired_removes_exactly_the_expired_runs_in_chunks(recorder: RecordingClient, dynamodb: Any) -> None:
    store = _store(recorder, page_size=10)
    expired = [f"old-{i:03d}" for i in range(60)]
    kept = [f"new-{i:03d}" for i in range(7)]
    for task_id in expired:
        store.start(_run(task_id, expires_at=PAST))
    store.start(_run("edge", expires_at=int(NOW)))  # expires_at <= now: expired too
    for task_id in kept:
        store.start(_run(task_id))
    recorder.calls.clear()

    assert store.delete_expired(now=NOW) == 61

    assert set(recorder.operations()) == {"scan", "batch_write_item"}
    scans = [params for name, params in recorder.calls if name == "scan"]
    assert len(scans) > 1  # paginated
    assert scans[0]["ProjectionExpression"] == "#task_id"
    assert scans[0]["FilterExpression"] == "#expires_at <= :now"
    batches = [params["RequestItems"][JOB_RUNS] for name, params in recorder.calls if name == "batch_write_item"]
    assert [len(b) for b in batches] == [25, 25, 11]
    remaining = sorted(item["task_id"]["S"] for item in dynamodb.scan(TableName=JOB_RUNS)["Items"])
    assert remaining == kept
    assert store.delete_expired(now=NOW) == 0


def test_delete_expired_retries_unprocessed_items_with_backoff(dynamodb: Any) -> None:
    plain = _store(dynamodb)
    for i in range(5):
        plain.start(_run(f"old-{i}", expires_at=PAST))
    throttled = RecordingClient(dynamodb, unprocessed_rounds=3)
    sleeps: list[float] = []
    store = _store(throttled, sleep=sleeps.append, backoff_base_seconds=0.05, backoff_cap_seconds=0.15)

    assert store.delete_expired(now=NOW) == 5

    assert throttled.operations().count("batch_write_item") == 4
    assert sleeps == [0.05, 0.1, 0.15]  # exponential, capped
    assert dynamodb.scan(TableName=JOB_RUNS)["Items"] == []


def test_delete_expired_raises_when_items_stay_unprocessed(dynamodb: Any) -> None:
    plain = _store(dynamodb)
    for i in range(5):
        plain.start(_run(f"old-{i}", expires_at=PAST))
    throttled = RecordingClient(dynamodb, unprocessed_rounds=100)

    with pytest.raises(StoreUnavailable):
        _store(throttled, batch_attempts=3).delete_expired(now=NOW)

    assert throttled.operations().count("batch_write_item") == 3


# --- expressions and errors -----------------------------------------------------------------------


def test_values_are_never_spliced_into_expressions(real_store: DynamoDBJobRunStore, recorder: RecordingClient) -> None:
    odd = "job' OR '1'='1 #expires_at :now"
    run = _run("t:1'\"", odd, counts={"#weird :name": 1})
    real_store.start(run)
    real_store.finish(replace(run, status=RunStatus.SUCCEEDED, finished_at=STARTED, duration_ms=5, error=None))
    assert [r.task_id for r in real_store.recent(odd, limit=5, now=NOW)] == ["t:1'\""]
    assert real_store.get("t:1'\"", now=NOW) is not None
    real_store.delete_expired(now=NOW)

    expressions = [value for _, params in recorder.calls for key, value in params.items() if key.endswith("Expression")]
    assert len(expressions) >= 5
    for expression in expressions:
        assert _EXPRESSION_TOKEN.fullmatch(expression), expression


def test_unreachable_endpoint_raises_store_unavailable(clean_env: pytest.MonkeyPatch) -> None:
    client = unreachable_client()
    store = DynamoDBJobRunStore(client, JOB_RUNS)

    for call in (
        lambda: store.start(_run("t1")),
        lambda: store.finish(_run("t1", status=RunStatus.SUCCEEDED)),
        lambda: store.get("t1", now=NOW),
        lambda: store.recent("refresh_quotes", limit=5, now=NOW),
        lambda: store.delete_expired(now=NOW),
    ):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.status_code == 503
        assert caught.value.code == "store_unavailable"
        assert caught.value.__cause__ is not None


def test_a_client_error_raises_store_unavailable_without_item_contents(dynamodb: Any) -> None:
    store = DynamoDBJobRunStore(dynamodb, "no-such-table")

    for call in (
        lambda: store.start(_run("secret-task", "secret-job")),
        lambda: store.finish(_run("secret-task", "secret-job", status=RunStatus.FAILED, error="secret")),
    ):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert "ResourceNotFoundException" in caught.value.message
        assert "secret" not in caught.value.message
        assert type(caught.value.__cause__).__name__ == "ResourceNotFoundException"
