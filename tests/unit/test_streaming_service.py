"""StreamingService's policies on fakes (no Redis, no DynamoDB, no gateway): the per-user connection cap,
subscribe/unsubscribe acks and snapshots, publish → shard dispatch → delivery numbered with ``seq``,
410 cleanup, batch frames, unchanged values not re-sent, the message budget. Over the real adapters and
the Chalice handlers: tests/app/test_websocket_handlers.py."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import pytest

from chalicelib.models.streaming import quote_update
from chalicelib.ports import BucketLimits, QuotaLimits, ShardTask
from chalicelib.services.market_data import CacheTimings, MarketDataService
from chalicelib.services.provider_chain import ProviderChain, RetryPolicy
from chalicelib.services.streaming import StreamingLimits, StreamingService, TooManyConnections
from tests.fakes.broadcaster import RecordingBroadcaster
from tests.fakes.cache import InMemoryCache
from tests.fakes.clock import FakeClock
from tests.fakes.connections import InMemoryConnectionStore
from tests.fakes.dispatcher import InlineShardDispatcher
from tests.fakes.provider import InMemoryProvider, quote
from tests.fakes.quotas import InMemoryCircuitBreaker, InMemoryQuotas
from tests.fakes.stream_state import InMemoryStreamState
from tests.fakes.ws_budget import InMemoryMessageBudget


@dataclass
class World:
    clock: FakeClock
    store: InMemoryConnectionStore
    state: InMemoryStreamState
    budget: InMemoryMessageBudget
    provider: InMemoryProvider
    broadcaster: RecordingBroadcaster
    dispatched: list[ShardTask]
    service: StreamingService

    def send(self, connection_id: str, message: dict[str, Any]) -> list[dict[str, Any]]:
        self.broadcaster.clear()
        self.service.handle_message(connection_id, json.dumps(message), self.broadcaster)
        return self.broadcaster.messages_to(connection_id)

    def subscribe(self, connection_id: str, *symbols: str) -> list[dict[str, Any]]:
        return self.send(
            connection_id, {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": list(symbols)}}
        )


def _world(**limits: Any) -> World:
    clock = FakeClock()
    provider = InMemoryProvider("yahoo", [quote("AAPL", 190.0), quote("MSFT", 410.0)])
    chain = ProviderChain(
        [provider],
        quotas=InMemoryQuotas(clock=clock),
        breaker=InMemoryCircuitBreaker(failure_threshold=3, cooldown_seconds=30, clock=clock),
        limits={"yahoo": QuotaLimits(0, 0)},
        retry=RetryPolicy(max_attempts=1),
        provider_timeout_seconds=2.0,
    )
    market = MarketDataService(
        cache=InMemoryCache(clock=clock),
        chain=chain,
        timings=CacheTimings(stale_ttl_seconds=3600, lock_ttl_seconds=5, lock_wait_seconds=0.1),
        clock=clock,
    )
    settings = StreamingLimits(shard_count=4, **limits)
    store = InMemoryConnectionStore(shard_count=4, clock=clock)
    state = InMemoryStreamState(clock=clock)
    budget = InMemoryMessageBudget(clock=clock)
    broadcaster = RecordingBroadcaster()
    dispatched: list[ShardTask] = []
    service: StreamingService

    def worker(task: ShardTask) -> None:
        dispatched.append(task)
        service.deliver_shard(task.round_id, task.shard, broadcaster)

    service = StreamingService(
        store=store,
        state=state,
        market=market,
        limits=settings,
        budget=budget,
        clock=clock,
        dispatcher=InlineShardDispatcher(worker),
    )
    return World(clock, store, state, budget, provider, broadcaster, dispatched, service)


@pytest.fixture
def world() -> World:
    return _world()


def test_a_user_holds_at_most_the_cap_of_connections(world: World) -> None:
    for i in range(5):
        world.service.connect(f"c{i}", "alice")
    with pytest.raises(TooManyConnections):
        world.service.connect("c5", "alice")
    world.service.connect("b0", "bob")  # another user is not affected
    assert world.service.disconnect("c0") == 0
    world.service.connect("c5", "alice")  # a slot came back
    assert world.store.stats(top=5).open_connections == 6


def test_subscribe_acks_the_whole_set_with_numbered_snapshots_and_unsubscribe_acks_the_rest(world: World) -> None:
    world.service.connect("c1", "alice")
    replies = world.subscribe("c1", "AAPL", "MSFT")
    assert replies[0]["type"] == "subscribed"
    snapshots = replies[1:]
    assert len(snapshots) == 2
    assert [m["seq"] for m in snapshots] == [1, 2]
    assert world.store.topics_of("c1", now=world.clock.now) == ["quote:AAPL", "quote:MSFT"]
    replies = world.send("c1", {"type": "unsubscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    assert [m["type"] for m in replies] == ["unsubscribed"]
    assert world.store.topics_of("c1", now=world.clock.now) == ["quote:MSFT"]


def test_an_unknown_symbol_is_answered_with_an_error_and_never_stored(world: World) -> None:
    world.service.connect("c1", "alice")
    replies = world.subscribe("c1", "QZXQ")
    assert [m["type"] for m in replies] == ["subscribed", "error"]
    assert world.store.topics_of("c1", now=world.clock.now) == []


def test_bad_input_is_an_error_message_not_an_exception(world: World) -> None:
    world.service.connect("c1", "alice")
    world.broadcaster.clear()
    world.service.handle_message("c1", "{not json", world.broadcaster)
    (reply,) = world.broadcaster.messages_to("c1")
    assert reply["type"] == "error"


def test_publish_dispatches_one_worker_per_shard_and_delivers_numbered_once(world: World) -> None:
    connections = [f"conn-{i}" for i in range(8)]
    for connection_id in connections:
        world.service.connect(connection_id, f"user-{connection_id}")
        world.subscribe(connection_id, "AAPL")
    world.broadcaster.clear()
    report = world.service.publish([quote_update(_quote_response(world, 191.0))], world.broadcaster)
    shards = {r.shard for r in (world.store.get_connection(c, now=world.clock.now) for c in connections) if r}
    assert sorted(t.shard for t in world.dispatched) == sorted(shards)
    assert report.shards == len(shards)
    for connection_id in connections:
        (update,) = world.broadcaster.messages_to(connection_id)
        assert update["seq"] == 2  # after its snapshot (1)
    # The same value again is unchanged: nothing is sent.
    world.broadcaster.clear()
    again = world.service.publish([quote_update(_quote_response(world, 191.0))], world.broadcaster)
    assert (again.unchanged, world.broadcaster.sent) == (1, [])


def test_a_gone_connection_is_removed_with_its_subscriptions(world: World) -> None:
    world.service.connect("stays", "alice")
    world.service.connect("left", "bob")
    world.subscribe("stays", "AAPL")
    world.subscribe("left", "AAPL")
    world.broadcaster.gone.add("left")
    world.service.publish([quote_update(_quote_response(world, 192.0))], world.broadcaster)
    assert world.store.get_connection("left", now=world.clock.now) is None
    assert world.store.topic_registry().totals() == {"quote:AAPL": 1}
    assert len(world.broadcaster.messages_to("stays")) >= 1


def test_the_batch_format_gets_one_frame_per_round(world: World) -> None:
    world.service.connect("b1", "alice", message_format="batch")
    replies = world.subscribe("b1", "AAPL", "MSFT")
    assert [(m["type"], m.get("seq")) for m in replies] == [("subscribed", None), ("batch", 1)]  # one snapshot frame
    world.broadcaster.clear()
    updates = [quote_update(_quote_response(world, 193.0)), quote_update(_quote_response(world, 411.0, "MSFT"))]
    world.service.publish(updates, world.broadcaster)
    (frame,) = world.broadcaster.messages_to("b1")
    assert frame["type"] == "batch"
    assert frame["seq"] == 2  # a frame is one data message: one number
    assert len(frame["data"]["updates"]) == 2


def test_the_message_budget_refuses_a_flood_with_retry_after() -> None:
    budget = dataclasses.replace(
        StreamingLimits().message_budget, per_connection=BucketLimits(capacity=2, refill_per_second=0.1)
    )
    world = _world(message_budget=budget)
    world.service.connect("c1", "alice")
    ping = {"type": "ping"}
    assert [world.send("c1", ping)[0]["type"] for _ in range(2)] == ["pong", "pong"]
    (refused,) = world.send("c1", ping)
    assert refused["type"] == "error"
    assert refused["data"]["code"] == "rate_limited"


def _quote_response(world: World, price: float, symbol: str = "AAPL") -> Any:
    world.provider.quotes[symbol] = quote(symbol, price)
    world.clock.advance(120)  # past the quote's freshness: the next read fetches the new price
    return world.service._market.get_quote(symbol)


def test_only_removing_a_held_topic_counts_as_a_removal_for_the_registrys_copy(world: World) -> None:
    world.service.connect("c1", "alice")
    world.subscribe("c1", "AAPL")
    world.service.read_registry()

    def removals() -> int:
        copy = world.state.read_copy("registry")
        assert copy is not None
        return copy.removals

    unsubscribe = {"type": "unsubscribe", "data": {"type": "stock_quotes", "symbols": ["MSFT"]}}
    world.send("c1", unsubscribe)  # not held: the registry is unchanged
    assert removals() == 0
    world.send("c1", {**unsubscribe, "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    assert removals() == 1
    world.service.disconnect("c1")
    assert removals() == 2
