"""Sharded fan-out through the app's own container (moto, the suite's Redis, the replay): a round is
stored once and one worker invocation per shard holding a subscriber is dispatched; the worker
delivers to its shard's connections; a redelivered invocation sends nothing twice; a 410 inside a worker
cleans up the connection, its subscriptions and its registry counts; no Scan anywhere on that path."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import app as app_module
from chalicelib import bootstrap
from chalicelib.models.streaming import quote_update
from chalicelib.ports import ShardTask, shard_for
from chalicelib.services import streaming as streaming_module
from chalicelib.services.streaming import StreamingService
from infra.local.replay.transport import YahooReplayTransport
from tests.app.test_websocket_handlers import Lambda, _aapl, _connected, _container_with
from tests.fakes.broadcaster import RecordingBroadcaster
from tests.fakes.dispatcher import InlineShardDispatcher
from tests.fakes.dynamodb import dynamodb_operations

SHARDS = 4


class QueuedDispatcher(InlineShardDispatcher):
    """Queues each task instead of running it (as Lambda's queue would), so a test runs them when it likes."""

    def __init__(self) -> None:
        super().__init__(lambda _task: None)


@pytest.fixture
def dispatcher() -> QueuedDispatcher:
    return QueuedDispatcher()


@pytest.fixture
def ws(
    aws: None,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    replay_transport: YahooReplayTransport,
    broadcaster: RecordingBroadcaster,
    dispatcher: QueuedDispatcher,
) -> Iterator[Lambda]:
    handlers = _container_with(redis_url, tmp_path, replay_transport, broadcaster, WS_SHARD_COUNT=str(SHARDS))
    bootstrap.container().shard_dispatcher = dispatcher  # the cached property, replaced before first use
    yield handlers
    bootstrap.use_container(None)


def _streaming() -> StreamingService:
    return bootstrap.container().streaming


def _subscribe(ws: Lambda, connection_id: str, user: str, symbols: list[str]) -> str:
    cid = _connected(ws, connection_id, user)
    ws.send(cid, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": symbols}})
    return cid


def _ids_in_distinct_shards(count: int) -> list[str]:
    """Connection ids that hash to ``count`` different shards (ids are API Gateway's to choose; ours here)."""
    found: dict[int, str] = {}
    index = 0
    while len(found) < count:
        found.setdefault(shard_for(f"conn-{index}", SHARDS), f"conn-{index}")
        index += 1
    return list(found.values())


def test_a_round_dispatches_one_worker_per_shard_holding_a_subscriber_and_none_elsewhere(
    ws: Lambda, broadcaster: RecordingBroadcaster, dispatcher: QueuedDispatcher
) -> None:
    a, b, c = _ids_in_distinct_shards(3)
    _subscribe(ws, a, "u1", ["AAPL"])
    _subscribe(ws, b, "u2", ["AAPL", "MSFT"])
    _subscribe(ws, c, "u3", ["MSFT"])  # subscribes to nothing that changes in this round
    broadcaster.clear()

    report = _streaming().publish([quote_update(_aapl(101.25))], broadcaster)

    assert report.shards == 2
    assert sorted(task.shard for task in dispatcher.dispatched) == sorted(shard_for(x, SHARDS) for x in (a, b))
    assert broadcaster.sent == [], "the publisher posts nothing itself: the workers do"
    for task in dispatcher.dispatched:
        _streaming().deliver_shard(task.round_id, task.shard, broadcaster)
    for cid in (a, b):
        (update,) = broadcaster.messages_to(cid)
        assert (update["type"], update["data"]["quote"]["price"]) == ("quote_update", 101.25)
    assert broadcaster.messages_to(c) == []


def test_a_shard_invocation_delivered_twice_sends_once(
    ws: Lambda, broadcaster: RecordingBroadcaster, dispatcher: QueuedDispatcher
) -> None:
    (cid,) = _ids_in_distinct_shards(1)
    _subscribe(ws, cid, "u1", ["AAPL"])
    broadcaster.clear()
    _streaming().publish([quote_update(_aapl(99.5))], broadcaster)
    (task,) = dispatcher.dispatched

    first = _streaming().deliver_shard(task.round_id, task.shard, broadcaster)
    again = _streaming().deliver_shard(task.round_id, task.shard, broadcaster)  # Lambda's at-least-once

    assert (first.sent, again.sent, again.dropped) == (1, 0, 1)
    (update,) = broadcaster.messages_to(cid)
    assert update["data"]["quote"]["price"] == 99.5


def test_a_410_inside_a_shard_worker_removes_the_connection_its_subscriptions_and_registry_counts(
    ws: Lambda, broadcaster: RecordingBroadcaster, dispatcher: QueuedDispatcher
) -> None:
    alive, gone = _ids_in_distinct_shards(2)
    _subscribe(ws, alive, "u1", ["AAPL"])
    _subscribe(ws, gone, "u2", ["AAPL", "MSFT"])
    broadcaster.clear()
    broadcaster.gone.add(gone)
    _streaming().publish([quote_update(_aapl(98.0))], broadcaster)
    reports = [_streaming().deliver_shard(t.round_id, t.shard, broadcaster) for t in dispatcher.dispatched]

    assert sum(r.gone for r in reports) == 1
    store = bootstrap.container().connection_store
    now = time.time()
    assert store.get_connection(gone, now=now) is None
    assert store.subscribers("quote:MSFT", now=now) == []
    assert store.topic_registry().totals() == {"quote:AAPL": 1}
    assert [r.connection_id for r in store.connections_in_shard(shard_for(gone, SHARDS), now=now)] == []


def test_publishing_and_delivering_a_round_make_no_scan(
    ws: Lambda, broadcaster: RecordingBroadcaster, dispatcher: QueuedDispatcher
) -> None:
    for cid, user in zip(_ids_in_distinct_shards(3), ("u1", "u2", "u3"), strict=True):
        _subscribe(ws, cid, user, ["AAPL", "MSFT"])
    broadcaster.clear()
    client = bootstrap.container().dynamodb
    with dynamodb_operations(client) as operations:
        _streaming().publish([quote_update(_aapl(97.0))], broadcaster)
        for task in dispatcher.dispatched:
            _streaming().deliver_shard(task.round_id, task.shard, broadcaster)
    assert operations, "the registry and the shard reads are DynamoDB calls"
    assert "Scan" not in operations
    assert len(broadcaster.sent) == 3


def test_an_expired_round_is_a_logged_no_op_not_an_error(ws: Lambda, broadcaster: RecordingBroadcaster) -> None:
    report = _streaming().deliver_shard("quote@1", 0, broadcaster)
    assert (report.sent, report.connections) == (0, 0)
    assert broadcaster.sent == []


def test_a_malformed_worker_event_is_dropped_without_a_retry(ws: Lambda, broadcaster: RecordingBroadcaster) -> None:
    for event in ({}, {"round": "", "shard": 1}, {"round": "quote@1", "shard": -1}, {"round": "x", "shard": "a"}):
        assert app_module.fanout_worker(event, None) == {"sent": 0, "gone": 0, "failed": 0}
    assert broadcaster.sent == []


def test_the_worker_function_delivers_a_dispatched_task(
    ws: Lambda, broadcaster: RecordingBroadcaster, dispatcher: QueuedDispatcher
) -> None:
    (cid,) = _ids_in_distinct_shards(1)
    _subscribe(ws, cid, "u1", ["AAPL"])
    broadcaster.clear()
    _streaming().publish([quote_update(_aapl(96.0))], broadcaster)
    (task,) = dispatcher.dispatched
    assert isinstance(task, ShardTask)
    result = app_module.fanout_worker({"round": task.round_id, "shard": task.shard}, None)
    assert (result["sent"], result["connections"]) == (1, 1)
    assert broadcaster.messages_to(cid)[0]["data"]["quote"]["price"] == 96.0


def test_rounds_read_the_registrys_copy_which_every_subscribe_keeps_current(
    ws: Lambda, broadcaster: RecordingBroadcaster, dispatcher: QueuedDispatcher
) -> None:
    a, b = _ids_in_distinct_shards(2)
    _subscribe(ws, a, "u1", ["AAPL"])
    client = bootstrap.container().dynamodb

    def publish(price: float) -> list[str]:
        with dynamodb_operations(client) as operations:
            _streaming().publish([quote_update(_aapl(price))], broadcaster)
        return operations

    assert publish(95.0).count("Query") == SHARDS, "no copy yet: the registry is read (one Query per shard)"
    assert publish(96.0) == [], "then its copy in Redis"
    _subscribe(ws, b, "u2", ["AAPL", "MSFT"])  # a new (shard, topic) pair
    assert publish(97.0) == [], "the subscribe added its pairs to the copy"
    last_round = dispatcher.dispatched[-2:]
    assert {task.shard for task in last_round} == {shard_for(a, SHARDS), shard_for(b, SHARDS)}
    _streaming().deliver_shard(last_round[0].round_id, shard_for(b, SHARDS), broadcaster)
    assert broadcaster.messages_to(b)[-1]["data"]["quote"]["price"] == 97.0, "the new subscriber got the round"


def test_the_copy_is_read_again_once_old_and_then_drops_removed_pairs(
    ws: Lambda, broadcaster: RecordingBroadcaster, dispatcher: QueuedDispatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _ids_in_distinct_shards(2)
    _subscribe(ws, a, "u1", ["AAPL"])
    _subscribe(ws, b, "u2", ["AAPL"])
    streaming = _streaming()
    assert streaming.renew_registry_copy() is True, "no copy: read"
    assert streaming.renew_registry_copy() is False, "a fresh copy is kept"
    now = time.time()
    monkeypatch.setattr(streaming, "_clock", lambda: now + streaming_module.REGISTRY_COPY_MAX_AGE_SECONDS + 1)
    assert streaming.renew_registry_copy() is False, "old, but nothing was removed since: still exact"
    ws.disconnect(b)
    assert set(streaming.topic_registry().shards_for(["quote:AAPL"])) == {shard_for(a, SHARDS), shard_for(b, SHARDS)}

    assert streaming.renew_registry_copy() is True, "old, and a connection was removed since"
    assert streaming.topic_registry().shards_for(["quote:AAPL"]) == [shard_for(a, SHARDS)]


def test_a_shard_worker_reads_its_copy_in_redis_which_subscribes_and_removals_keep_exact(
    ws: Lambda, broadcaster: RecordingBroadcaster, dispatcher: QueuedDispatcher
) -> None:
    ids = [f"conn-{i}" for i in range(64)]
    shard = shard_for(ids[0], SHARDS)
    a, late, leaves, unsubscribes = [cid for cid in ids if shard_for(cid, SHARDS) == shard][:4]
    for cid, user in ((a, "u1"), (leaves, "u3"), (unsubscribes, "u4")):
        _subscribe(ws, cid, user, ["AAPL"])
    client = bootstrap.container().dynamodb

    def round_(price: float) -> list[str]:
        broadcaster.clear()
        _streaming().publish([quote_update(_aapl(price))], broadcaster)
        (task,) = dispatcher.dispatched[-1:]
        with dynamodb_operations(client) as operations:
            _streaming().deliver_shard(task.round_id, task.shard, broadcaster)
        return operations

    assert "Query" in round_(90.0), "no copy yet: the shard's connections are read from DynamoDB"
    _subscribe(ws, late, "u2", ["AAPL"])  # after the copy was made
    ws.disconnect(leaves)
    ws.send(unsubscribes, {"type": "unsubscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    assert round_(91.0) == [], "then no DynamoDB call at all: the copy in Redis"
    prices = {cid: [m["data"]["quote"]["price"] for m in broadcaster.messages_to(cid)] for cid in ids[:64]}
    assert (prices[a], prices[late], prices[leaves], prices[unsubscribes]) == ([91.0], [91.0], [], [])
