"""The MessageBudget contract: RedisMessageBudget against a real Redis server (the suite's own), and the
InMemoryMessageBudget fake through every test that does not look at Redis itself (``make_budget``): token
buckets per connection and per user taken in one atomic step, refill over time, rejections counted per window,
unknown connections, and its own per-container buckets while Redis is unreachable."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis

from chalicelib.adapters.redis_ws_budget import RedisMessageBudget
from chalicelib.ports import BucketLimits, BudgetDecision, ConnectionIdentity, MessageBudget, MessageBudgetLimits
from infra.local.run import free_port
from tests.fakes.ws_budget import InMemoryMessageBudget

CONN = BucketLimits(capacity=10, refill_per_second=1.0)
USER = BucketLimits(capacity=100, refill_per_second=10.0)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _budget(client: redis.Redis, clock: Clock) -> RedisMessageBudget:
    return RedisMessageBudget(client, key_prefix="budget-test:", clock=clock)


MakeBudget = Callable[["Clock"], MessageBudget]


@pytest.fixture(params=["redis", "in_memory"])
def make_budget(request: pytest.FixtureRequest, redis_client: redis.Redis) -> MakeBudget:
    def make(clock: Clock) -> MessageBudget:
        return InMemoryMessageBudget(clock=clock) if request.param == "in_memory" else _budget(redis_client, clock)

    return make


def _take(budget: MessageBudget, connection_id: str, cost: int, *, user: BucketLimits = USER) -> BudgetDecision:
    return budget.take(
        connection_id, cost, MessageBudgetLimits(per_connection=CONN, per_user=user, rejection_window_seconds=60)
    )


def test_a_bucket_gives_its_capacity_then_refuses_with_the_wait_then_refills(make_budget: MakeBudget) -> None:
    clock = Clock()
    budget = make_budget(clock)
    budget.register("c1", ConnectionIdentity("alice", token_expires_at=1_700_003_600), ttl_seconds=60)
    assert [_take(budget, "c1", 5).allowed for _ in range(2)] == [True, True]
    refused = _take(budget, "c1", 5)
    assert refused.allowed is False
    assert refused.retry_after_seconds == 5  # 5 units at 1 per second
    assert refused.rejections == 1
    assert refused.identity == ConnectionIdentity("alice", 1_700_003_600)
    clock.now += 3
    assert _take(budget, "c1", 5).allowed is False  # 3 units back, 5 needed
    clock.now += 2
    taken = _take(budget, "c1", 5)
    assert taken.allowed is True
    assert taken.identity == ConnectionIdentity("alice", 1_700_003_600)
    assert taken.degraded is False


def test_the_user_bucket_is_shared_by_its_connections_and_nothing_is_taken_on_refusal(
    make_budget: MakeBudget,
) -> None:
    clock = Clock()
    budget = make_budget(clock)
    small_user = BucketLimits(capacity=12, refill_per_second=0.001)
    for cid in ("a", "b"):
        budget.register(cid, ConnectionIdentity("bob"), ttl_seconds=60)
    budget.register("c", ConnectionIdentity("carol"), ttl_seconds=60)
    assert _take(budget, "a", 10, user=small_user).allowed is True
    assert _take(budget, "b", 5, user=small_user).allowed is False  # bob has 2 left
    assert _take(budget, "b", 2, user=small_user).allowed is True  # the refusal took nothing from "b" or bob
    assert _take(budget, "c", 10, user=small_user).allowed is True  # carol is not bob


def test_rejections_are_counted_within_the_window_and_start_again_after_it(make_budget: MakeBudget) -> None:
    clock = Clock()
    budget = make_budget(clock)
    budget.register("r", ConnectionIdentity("dave"), ttl_seconds=600)
    _take(budget, "r", 10)
    assert [_take(budget, "r", 10).rejections for _ in range(3)] == [1, 2, 3]
    clock.now += 61
    _take(budget, "r", 10)  # refilled: allowed
    assert _take(budget, "r", 10).rejections == 1


def test_an_unregistered_connection_is_unknown_and_nothing_is_taken(redis_client: redis.Redis) -> None:
    budget = _budget(redis_client, Clock())
    decision = _take(budget, "never", 1)
    assert decision.allowed is False
    assert decision.identity is None
    assert redis_client.keys("budget-test:ws:budget:user:*") == []


def test_concurrent_takes_never_overdraw(make_budget: MakeBudget) -> None:
    budget = make_budget(Clock())  # a frozen clock: no refill during the race
    budget.register("race", ConnectionIdentity("erin"), ttl_seconds=60)
    barrier = threading.Barrier(20)
    outcomes: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        barrier.wait()
        allowed = _take(budget, "race", 1).allowed
        with lock:
            outcomes.append(allowed)

    threads = [threading.Thread(target=take) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 10 + [True] * 10


def test_without_redis_each_container_still_refuses_past_the_budget() -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
    clock = Clock()
    budget = _budget(dead, clock)
    budget.register("d", ConnectionIdentity("frank", token_expires_at=42), ttl_seconds=60)
    outcomes = [_take(budget, "d", 5) for _ in range(3)]
    assert [o.allowed for o in outcomes] == [True, True, False]
    assert all(o.degraded for o in outcomes)
    assert outcomes[-1].retry_after_seconds == 5
    assert outcomes[-1].identity == ConnectionIdentity("frank", 42)
    # A connection this container never saw is unknown to it (the service then reads the store).
    assert _take(budget, "elsewhere", 1).identity is None
