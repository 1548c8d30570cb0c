"""The scheduled jobs invoked the way Lambda invokes them (`chalice.test.Client.lambda_.invoke` with a
CloudWatch scheduled event), against our own Redis, moto's DynamoDB (in-process) and the replay source;
what they publish is recorded by the fake management API. The jobs endpoints through the REST API."""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.errors import StoreUnavailable
from chalicelib.ports import ConnectionRecord, JobRun, RunStatus, StoredCopy
from chalicelib.settings import load_settings
from infra.local.replay.transport import YahooReplayTransport
from infra.local.token import issue_dev_token
from tests.app.conftest import app_settings_env
from tests.app.test_websocket_handlers import Lambda
from tests.fakes.broadcaster import RecordingBroadcaster
from tests.fakes.dynamodb import dynamodb_operations

CONSTITUENTS = Path(__file__).resolve().parents[2] / "chalicelib" / "data" / "sp500_constituents.csv"


def scheduled_event(job: str, event_id: str | None = None) -> dict[str, Any]:
    """What EventBridge sends for a schedule rule (a fresh id per delivery unless given)."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/market-data-local-{job}"],
        "detail": {},
    }


def invoke(client: Client, job: str, event_id: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = client.lambda_.invoke(job, scheduled_event(job, event_id)).payload
    return result


def _container() -> bootstrap.Container:
    return bootstrap.container()


def _cached(redis_client: redis.Redis, key: str) -> dict[str, Any] | None:
    raw = redis_client.get(f"app:{key}")
    return json.loads(raw) if raw else None


def _subscribe_to_nvda(connection_id: str) -> None:
    ws = Lambda()
    assert ws.connect(connection_id, token=issue_dev_token("alice"))["statusCode"] == 200
    ws.send(connection_id, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["NVDA"]}})


@pytest.fixture
def jobs_client(
    aws: None,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    replay_transport: YahooReplayTransport,
    broadcaster: RecordingBroadcaster,
    request: pytest.FixtureRequest,
) -> Iterator[Client]:
    extra: dict[str, str] = {"JOB_POPULAR_SYMBOLS": "AAPL,MSFT", "JOB_FAILING_AFTER": "2"}
    extra.update(getattr(request, "param", {}))
    settings = load_settings(app_settings_env(redis_url, tmp_path, **extra))
    bootstrap.use_container(bootstrap.Container(settings, replay_transport=replay_transport, broadcaster=broadcaster))
    with Client(app_module.app, stage_name="local") as test_client:
        yield test_client
    bootstrap.use_container(None)


# --- each job, as Lambda invokes it -----------------------------------------------------------------


def test_quote_refresh_caches_publishes_changes_and_records_the_run(
    jobs_client: Client, redis_client: redis.Redis, broadcaster: RecordingBroadcaster
) -> None:
    _subscribe_to_nvda("sub-1")
    broadcaster.clear()

    result = invoke(jobs_client, "refresh_quotes")

    assert result["status"] == "succeeded", result
    counts = result["counts"]
    assert counts["symbols"] == 3  # NVDA (subscribed) + AAPL, MSFT (popular)
    assert counts["refreshed"] == 3
    assert counts["upstream_calls_yahoo"] == 1  # one batched call for all three
    assert counts["messages_sent"] == 1
    for symbol in ("AAPL", "MSFT", "NVDA"):
        assert _cached(redis_client, f"quote:{symbol}") is not None
    (update,) = broadcaster.messages_to("sub-1")
    assert update["type"] == "quote_update"
    assert update["data"]["symbol"] == "NVDA"
    assert update["data"]["snapshot"] is False
    run = _container().job_runs.get(result["task_id"], now=time.time())
    assert run is not None
    assert (run.status, run.trigger, run.job_name) == (RunStatus.SUCCEEDED, "schedule", "refresh_quotes")
    assert run.duration_ms is not None
    assert run.finished_at is not None
    # The same value again is not re-sent to the subscriber.
    again = invoke(jobs_client, "refresh_quotes")
    assert again["counts"]["messages_sent"] == 0
    assert again["counts"]["unchanged"] == 1


def test_a_quote_refresh_reads_the_registrys_copy_twice_the_round_judging_its_renewal(
    jobs_client: Client, broadcaster: RecordingBroadcaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    _subscribe_to_nvda("sub-1")
    assert invoke(jobs_client, "refresh_quotes")["status"] == "succeeded"  # the first run makes the copy
    state = _container().stream_state
    real = state.read_copy
    reads: list[str] = []

    def counted(name: str) -> StoredCopy | None:
        reads.append(name)
        return real(name)

    monkeypatch.setattr(state, "read_copy", counted)
    broadcaster.clear()
    result = invoke(jobs_client, "refresh_quotes")

    assert result["status"] == "succeeded", result
    assert result["counts"]["registry_read"] == 0, "a fresh copy is kept"
    assert reads.count("registry") == 2, "the symbols' choice, then the round (its renewal judged by the same copy)"


def test_a_failed_registry_renewal_after_the_round_does_not_fail_the_refresh(
    jobs_client: Client, broadcaster: RecordingBroadcaster, monkeypatch: pytest.MonkeyPatch
) -> None:
    _subscribe_to_nvda("sub-1")
    broadcaster.clear()

    def timed_out(*, seen: object = None) -> bool:
        raise StoreUnavailable("connection store: query failed (ReadTimeoutError)")

    monkeypatch.setattr(_container().streaming, "renew_registry_copy", timed_out)
    result = invoke(jobs_client, "refresh_quotes")

    assert result["status"] == "succeeded", result
    assert (result["counts"]["messages_sent"], result["counts"]["registry_read_failed"]) == (1, 1)
    assert broadcaster.messages_to("sub-1")[0]["data"]["symbol"] == "NVDA", "the round went out first"


@pytest.mark.parametrize(
    ("job", "keys", "message_types"),
    [
        ("refresh_indices", ["market:indices"], ["market_update"]),
        (
            "refresh_market",
            ["market:sectors", "market:movers:gainers", "market:movers:losers"],
            ["sector_update", "market_update"],
        ),
        ("refresh_sentiment", ["market:sentiment"], ["sentiment_update"]),
    ],
)  # fmt: skip
def test_market_refreshes_cache_their_panels_and_publish_to_channel_subscribers(
    jobs_client: Client,
    redis_client: redis.Redis,
    broadcaster: RecordingBroadcaster,
    job: str,
    keys: list[str],
    message_types: list[str],
) -> None:
    ws = Lambda()
    ws.connect("chan-1", token=issue_dev_token("bob"))
    channels = ["indices", "sectors", "sentiment", "movers"]
    ws.send("chan-1", {"type": "subscribe", "data": {"type": "market_data", "channels": channels}})
    broadcaster.clear()

    result = invoke(jobs_client, job)

    assert result["status"] == "succeeded", result
    for key in keys:
        assert _cached(redis_client, key) is not None, key
    sent = broadcaster.messages_to("chan-1")
    assert sorted(m["type"] for m in sent) == sorted(message_types)
    assert all(m["data"]["snapshot"] is False and m["data"]["source"] == "replay" for m in sent)


def test_cache_warming_fills_quotes_profiles_and_history_of_the_popular_list(
    jobs_client: Client, redis_client: redis.Redis
) -> None:
    result = invoke(jobs_client, "warm_cache")
    assert result["status"] == "succeeded", result
    assert result["counts"]["quotes"] == 2
    assert _cached(redis_client, "quote:AAPL") is not None
    assert _cached(redis_client, "profile:AAPL") is not None
    assert _cached(redis_client, "historical:AAPL:1y:1d") is not None
    # Then the dashboard's first requests are hits.
    headers = {"Authorization": f"Bearer {issue_dev_token()}"}
    for path in ("/api/v1/market/quote/AAPL", "/api/v1/market/profile/AAPL", "/api/v1/market/historical/AAPL"):
        response = jobs_client.http.get(path, headers=headers)
        assert response.status_code == 200
        assert json.loads(response.body)["cached"] is True, path


def test_cleanup_removes_expired_connections_subscriptions_and_runs(jobs_client: Client) -> None:
    container = _container()
    store, runs = container.connection_store, container.job_runs
    past = int(time.time()) - 60
    store.add_connection(ConnectionRecord("old", "u", connected_at=_now_dt(), expires_at=past))
    store.add_subscriptions("old", ["quote:AAPL", "channel:indices"], expires_at=past)
    store.add_connection(ConnectionRecord("live", "u", connected_at=_now_dt(), expires_at=past + 7200))
    store.add_subscriptions("live", ["quote:AAPL"], expires_at=past + 7200)
    runs.start(JobRun(str(uuid.uuid4()), "refresh_quotes", "schedule", RunStatus.SUCCEEDED, _now_dt(), expires_at=past))

    result = invoke(jobs_client, "cleanup")

    assert result["status"] == "succeeded", result
    assert result["counts"]["connections_removed"] == 1
    assert result["counts"]["subscriptions_removed"] == 2
    assert result["counts"]["job_runs_removed"] == 1
    assert store.get_connection("live", now=time.time()) is not None
    assert store.subscribers("quote:AAPL", now=time.time()) == ["live"]
    assert store.topic_registry().totals() == {"quote:AAPL": 1}  # the expired one was counted down
    assert result["counts"]["registry_topic_counts_fixed"] == 0


def test_cleanup_repairs_a_drifted_registry(jobs_client: Client) -> None:
    container = _container()
    store, table = container.connection_store, container.settings.registry_table
    record = ConnectionRecord("live", "u", connected_at=_now_dt(), expires_at=int(time.time()) + 7200, shard=5)
    assert store.add_connection(record)
    store.add_subscriptions("live", ["quote:AAPL"], expires_at=record.expires_at)
    # GIVEN a count left behind (a process died between writes) and one lost.
    client = container.dynamodb
    client.put_item(TableName=table, Item={"pk": {"S": "REG#2"}, "sk": {"S": "quote:TSLA"}, "count": {"N": "3"}})
    client.delete_item(TableName=table, Key={"pk": {"S": "REG#5"}, "sk": {"S": "quote:AAPL"}})
    assert store.subscribed_topics() == ["quote:TSLA"]

    result = invoke(jobs_client, "cleanup")

    assert result["status"] == "succeeded", result
    assert result["counts"]["registry_topic_counts_fixed"] == 2
    assert store.topic_registry().counts == {5: {"quote:AAPL": 1}}


def test_the_quote_refresh_makes_no_scan(jobs_client: Client, broadcaster: RecordingBroadcaster) -> None:
    ws = Lambda()
    for cid, user, symbols in (("r1", "alice", ["NVDA", "AMD"]), ("r2", "bob", ["NVDA"])):
        assert ws.connect(cid, token=issue_dev_token(user))["statusCode"] == 200
        ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": symbols}})

    with dynamodb_operations(_container().dynamodb) as operations:
        result = invoke(jobs_client, "refresh_quotes")

    assert result["status"] == "succeeded", result
    assert result["counts"]["subscribed_symbols"] == 2  # AMD and NVDA, found in the registry
    assert "Scan" not in operations
    assert operations.count("Query") >= 16  # one per shard (WS_SHARD_COUNT), then one per topic to publish


def _now_dt() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# --- guards: overlap, duplicates, crashes, quota pressure -------------------------------------------


def test_a_trigger_while_the_job_runs_is_recorded_as_skipped(jobs_client: Client) -> None:
    cache = _container().cache
    token = cache.acquire_lock("job:refresh_indices", 30)  # another invocation holds the job
    assert token is not None
    try:
        result = invoke(jobs_client, "refresh_indices")
    finally:
        cache.release_lock("job:refresh_indices", token)
    assert result["status"] == "skipped"
    run = _container().job_runs.get(result["task_id"], now=time.time())
    assert run is not None
    assert run.status is RunStatus.SKIPPED
    assert invoke(jobs_client, "refresh_indices")["status"] == "succeeded"  # the lock is free again


def test_a_duplicate_delivery_does_not_double_the_work(jobs_client: Client) -> None:
    event_id = str(uuid.uuid4())
    first = invoke(jobs_client, "refresh_quotes", event_id)
    second = invoke(jobs_client, "refresh_quotes", event_id)
    assert first["status"] == "succeeded"
    assert second["task_id"] == first["task_id"]
    assert second["counts"] == first["counts"]
    runs = _container().job_runs.recent("refresh_quotes", limit=10, now=time.time())
    assert [r.task_id for r in runs] == [first["task_id"]]
    providers = _container().provider_status.status(detail=True).providers
    yahoo = next(p for p in providers if p.name == "yahoo")
    assert yahoo.quota_minute is not None
    assert yahoo.quota_minute.used == 1  # one upstream call, not two


def test_a_crashing_run_is_recorded_as_failed_and_repeated_failures_turn_the_job_failing(
    jobs_client: Client,
) -> None:
    # GIVEN the registry table is gone (a broken deployment): the refresh cannot even start.
    boto3.client("dynamodb", region_name="us-east-1").delete_table(TableName=_container().settings.registry_table)
    results = [invoke(jobs_client, "refresh_quotes") for _ in range(2)]
    assert [r["status"] for r in results] == ["failed", "failed"]
    # A code and a fixed, safe message; the exception's text (table names, SDK errors) stays in the logs.
    recorded = results[0]["error"] or ""
    assert recorded.startswith("store_unavailable: the connection store could not be reached")
    assert _container().settings.registry_table not in recorded
    assert "Exception" not in recorded
    run = _container().job_runs.get(results[0]["task_id"], now=time.time())
    assert run is not None
    assert run.status is RunStatus.FAILED
    assert run.error == recorded
    operator = {"Authorization": f"Bearer {issue_dev_token('ops', operator=True)}"}
    served = json.loads(jobs_client.http.get(f"/api/v1/market/jobs/{run.task_id}", headers=operator).body)
    assert served["error"] == recorded

    status = _status(jobs_client)["refresh_quotes"]
    assert status["consecutive_failures"] == 2
    assert status["health"] == "failing"
    assert status["last_run"]["status"] == "failed"


def _popular_list(count: int) -> str:
    with CONSTITUENTS.open(newline="") as handle:
        symbols = [row["Symbol"].replace(".", "-") for row in csv.DictReader(handle)]
    chosen = ["AAPL", *[s for s in symbols if s not in {"AAPL", "MSFT"}][: count - 2], "MSFT"]
    return ",".join(chosen)


@pytest.mark.parametrize(
    "jobs_client", [{"JOB_POPULAR_SYMBOLS": _popular_list(300), "YAHOO_QUOTA_PER_MINUTE": "1"}], indirect=True
)
def test_a_refresh_larger_than_the_quota_takes_what_it_allows_and_leaves_the_rest(jobs_client: Client) -> None:
    """300 symbols need two Yahoo calls (200 per call) but the shared quota allows one this minute: the
    first batch is refreshed, the rest waits for the next round; no request beyond the quota is sent."""
    result = invoke(jobs_client, "refresh_quotes")
    assert result["status"] == "succeeded", result
    counts = result["counts"]
    assert counts["symbols"] == 300
    assert counts["upstream_calls_yahoo"] == 1
    assert counts["not_refreshed"] >= 100
    cache = _container().cache
    assert cache.get("quote:AAPL") is not None  # in the first batch
    assert cache.get("quote:MSFT") is None  # in the second: next round


# --- refresh-ahead: what readers looked at recently ------------------------------------------------


def _read(client: Client, path: str) -> Any:
    response = client.http.get(path, headers={"Authorization": f"Bearer {issue_dev_token('reader')}"})
    assert response.status_code == 200, response.body
    return json.loads(response.body)


def _hot(redis_client: redis.Redis) -> list[str]:
    members: list[bytes] = redis_client.zrevrange("app:hot:quotes", 0, -1)  # type: ignore[assignment]
    return [m.decode() for m in members]


def test_a_recently_read_symbol_is_refreshed_by_the_job_and_the_next_read_is_a_hit(
    jobs_client: Client, redis_client: redis.Redis
) -> None:
    # GIVEN readers looked at NVDA (one quote) and GOOG, SPY (a batch) ...
    assert _read(jobs_client, "/api/v1/market/quote/NVDA")["cached"] is False
    assert [q["quote"]["cached"] for q in _read(jobs_client, "/api/v1/market/quotes?symbols=GOOG,SPY")["quotes"]] == [
        False,
        False,
    ]
    assert sorted(_hot(redis_client)) == ["GOOG", "NVDA", "SPY"]
    # ... and their cached quotes have since expired.
    redis_client.delete("app:quote:NVDA", "app:quote:GOOG", "app:quote:SPY")

    result = invoke(jobs_client, "refresh_quotes")

    assert result["status"] == "succeeded", result
    counts = result["counts"]
    assert counts["hot_symbols"] == 3
    assert counts["symbols"] == 5  # AAPL, MSFT (popular) + the three hot ones
    assert counts["refreshed"] == 5
    assert counts["upstream_calls_yahoo"] == 1  # in the same batched call as the popular ones
    # The job's own reads do not make the popular symbols "hot".
    assert sorted(_hot(redis_client)) == ["GOOG", "NVDA", "SPY"]
    # THEN the readers' next reads are hits.
    assert _read(jobs_client, "/api/v1/market/quote/NVDA")["cached"] is True
    batch = _read(jobs_client, "/api/v1/market/quotes?symbols=GOOG,SPY")["quotes"]
    assert [q["quote"]["cached"] for q in batch] == [True, True]


@pytest.mark.parametrize("jobs_client", [{"JOB_QUOTE_REFRESH_MAX_SYMBOLS": "3"}], indirect=True)
def test_the_run_bound_keeps_the_most_recently_read_hot_symbols_and_defers_the_rest(
    jobs_client: Client, redis_client: redis.Redis
) -> None:
    for symbol in ("NVDA", "GOOG", "AAPL"):  # AAPL is popular already: refreshed anyway, not counted as hot
        _read(jobs_client, f"/api/v1/market/quote/{symbol}")
    redis_client.delete("app:quote:NVDA", "app:quote:GOOG")

    counts = invoke(jobs_client, "refresh_quotes")["counts"]

    assert (counts["symbols"], counts["hot_symbols"], counts["hot_deferred"]) == (3, 1, 1)
    assert _cached(redis_client, "quote:GOOG") is not None  # read more recently: refreshed
    assert _cached(redis_client, "quote:NVDA") is None  # left for a run with room (or its next reader)


@pytest.mark.parametrize("jobs_client", [{"JOB_QUOTE_REFRESH_MAX_SYMBOLS": "0"}], indirect=True)
def test_subscribed_and_popular_symbols_are_refreshed_whatever_the_bound(
    jobs_client: Client, redis_client: redis.Redis
) -> None:
    _read(jobs_client, "/api/v1/market/quote/NVDA")
    counts = invoke(jobs_client, "refresh_quotes")["counts"]
    assert (counts["symbols"], counts["refreshed"], counts["hot_symbols"], counts["hot_deferred"]) == (2, 2, 0, 1)


def test_an_unknown_symbol_does_not_stay_hot(jobs_client: Client, redis_client: redis.Redis) -> None:
    headers = {"Authorization": f"Bearer {issue_dev_token('reader')}"}
    assert jobs_client.http.get("/api/v1/market/quote/ZZZZZ", headers=headers).status_code == 404
    _read(jobs_client, "/api/v1/market/quotes?symbols=NVDA,QQQQQ")
    assert _hot(redis_client) == ["NVDA"]


# --- the endpoints ----------------------------------------------------------------------------------


def _auth(*, operator: bool = True) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_dev_token('ops-user', operator=operator)}"}


def _status(client: Client) -> dict[str, Any]:
    response = client.http.get("/api/v1/market/jobs/status", headers=_auth())
    assert response.status_code == 200, response.body
    return {job["name"]: job for job in json.loads(response.body)["jobs"]}


def test_jobs_status_lists_every_job_with_its_schedule_and_health(jobs_client: Client) -> None:
    before = _status(jobs_client)
    assert set(before) == {
        "refresh_quotes", "refresh_indices", "refresh_market", "refresh_sentiment", "warm_cache", "cleanup",
    }  # fmt: skip
    assert before["refresh_quotes"]["schedule"] == "rate(1 minute)"
    assert before["refresh_indices"]["schedule"] == "rate(2 minutes)"
    assert before["refresh_market"]["schedule"] == before["refresh_sentiment"]["schedule"] == "rate(5 minutes)"
    assert before["warm_cache"]["schedule"] == "rate(6 hours)"
    assert before["cleanup"]["schedule"] == "cron(0 2 * * ? *)"
    assert before["refresh_quotes"]["health"] == "late"  # never ran
    invoke(jobs_client, "refresh_quotes")
    after = _status(jobs_client)["refresh_quotes"]
    assert after["health"] == "healthy"
    assert after["last_success_at"] is not None
    assert after["next_expected_run"] is not None


def test_manual_trigger_needs_an_operator_token_and_returns_the_task_id(jobs_client: Client) -> None:
    path = "/api/v1/market/jobs/refresh_indices/run"
    refused = jobs_client.http.post(path, headers=_auth(operator=False))
    assert refused.status_code == 403
    assert json.loads(refused.body)["error"]["code"] == "forbidden"
    assert jobs_client.http.post(path).status_code == 401

    accepted = jobs_client.http.post(path, headers=_auth())
    assert accepted.status_code == 200, accepted.body
    run = json.loads(accepted.body)
    assert run["trigger"] == "manual"
    assert run["status"] == "succeeded"

    fetched = jobs_client.http.get(f"/api/v1/market/jobs/{run['task_id']}", headers=_auth())
    assert fetched.status_code == 200
    assert json.loads(fetched.body)["task_id"] == run["task_id"]
    unknown_job = jobs_client.http.post("/api/v1/market/jobs/make_coffee/run", headers=_auth())
    assert unknown_job.status_code == 404


def test_job_run_lookup_is_404_for_unknown_and_400_for_malformed_ids(jobs_client: Client) -> None:
    unknown = jobs_client.http.get(f"/api/v1/market/jobs/{uuid.uuid4()}", headers=_auth())
    assert unknown.status_code == 404
    malformed = jobs_client.http.get("/api/v1/market/jobs/not-a-task-id", headers=_auth())
    assert malformed.status_code == 400
    assert json.loads(malformed.body)["error"]["code"] == "validation_error"
