"""The Quotas, RateLimiter and CircuitBreaker contract: RedisQuotas and RedisCircuitBreaker against a
real Redis server (the suite's own), and the in-memory fakes through every test that does not look at
Redis itself (``backend`` is parametrised over both).

The concurrency tests run many threads, each with its own connection, against the same counters: the
shared quota must never be exceeded and exactly one caller may probe a half-open breaker."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import pytest
import redis

from chalicelib.adapters.redis_breaker import RedisCircuitBreaker
from chalicelib.adapters.redis_quotas import LocalRateLimiter, RedisQuotas
from chalicelib.ports import BreakerState, CircuitBreaker, QuotaLimits, Quotas, RateLimiter
from tests.fakes.quotas import InMemoryCircuitBreaker, InMemoryQuotas

MINUTE_START = 1_700_000_040.0  # a whole UTC minute


class FakeClock:
    def __init__(self, now: float = MINUTE_START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class QuotasAndLimits(Quotas, RateLimiter, Protocol):
    """What RedisQuotas and InMemoryQuotas both are."""


class Backend:
    """Adapters of one kind over one shared backend: Redis (each adapter with a client of its own, like a
    separate Lambda), or one in-memory store per clock."""

    def __init__(self, kind: str, redis_url: str) -> None:
        self.kind = kind
        self._redis_url = redis_url
        self._clients: list[redis.Redis] = []
        self._fakes: dict[tuple[str, int], Any] = {}

    def _client(self) -> redis.Redis:
        client = redis.Redis.from_url(self._redis_url)
        self._clients.append(client)
        return client

    def quotas(self, clock: Callable[[], float]) -> QuotasAndLimits:
        if self.kind == "in_memory":
            fake: QuotasAndLimits = self._fakes.setdefault(("quotas", id(clock)), InMemoryQuotas(clock=clock))
            return fake
        return RedisQuotas(self._client(), key_prefix="q:", clock=clock)

    def breaker(self, clock: Callable[[], float], threshold: int = 3) -> CircuitBreaker:
        if self.kind == "in_memory":
            fake = InMemoryCircuitBreaker(failure_threshold=threshold, cooldown_seconds=30, clock=clock)
            breaker: CircuitBreaker = self._fakes.setdefault(("breaker", id(clock)), fake)
            return breaker
        return _breaker(self._client(), clock, threshold)

    def close(self) -> None:
        for client in self._clients:
            client.close()


@pytest.fixture(params=["redis", "in_memory"])
def backend(request: pytest.FixtureRequest, redis_url: str, redis_client: redis.Redis) -> Iterator[Backend]:
    chosen = Backend(request.param, redis_url)
    yield chosen
    chosen.close()


def test_quota_grants_until_the_minute_limit_then_refuses(backend: Backend) -> None:
    clock = FakeClock(MINUTE_START + 10)
    quotas = backend.quotas(clock)
    limits = QuotaLimits(per_minute=3, per_day=100)

    decisions = [quotas.try_take("fmp", limits) for _ in range(5)]

    assert [d.granted for d in decisions] == [True, True, True, False, False]
    assert [d.remaining for d in decisions[:3]] == [2, 1, 0]  # the tighter window, after each take
    assert decisions[3].exhausted_window == "minute"
    assert decisions[3].retry_after_seconds == 50
    usage = quotas.usage("fmp")
    assert usage is not None
    assert (usage.minute_used, usage.day_used) == (3, 3)


def test_next_minute_has_a_fresh_allowance_but_the_day_counts_on(backend: Backend) -> None:
    clock = FakeClock(MINUTE_START + 10)
    quotas = backend.quotas(clock)
    limits = QuotaLimits(per_minute=2, per_day=3)
    assert all(quotas.try_take("alpha_vantage", limits).granted for _ in range(2))
    assert not quotas.try_take("alpha_vantage", limits).granted

    clock.now += 60
    assert quotas.try_take("alpha_vantage", limits).granted
    refused = quotas.try_take("alpha_vantage", limits)
    assert not refused.granted
    assert refused.exhausted_window == "day"


def test_a_refused_take_consumes_nothing(backend: Backend) -> None:
    quotas = backend.quotas(FakeClock())
    limits = QuotaLimits(per_minute=1, per_day=10)
    quotas.try_take("tiingo", limits)
    for _ in range(5):
        quotas.try_take("tiingo", limits)
    usage = quotas.usage("tiingo")
    assert usage is not None
    assert usage.day_used == 1


def test_quotas_are_per_vendor_and_zero_means_unlimited(backend: Backend) -> None:
    quotas = backend.quotas(FakeClock())
    assert quotas.try_take("fmp", QuotaLimits(1, 1)).granted
    assert not quotas.try_take("fmp", QuotaLimits(1, 1)).granted
    assert quotas.try_take("yahoo", QuotaLimits(1, 1)).granted
    assert all(quotas.try_take("tiingo", QuotaLimits(0, 0)).granted for _ in range(20))


@pytest.mark.parametrize("callers", [50])
def test_parallel_callers_never_exceed_the_shared_limit(backend: Backend, callers: int) -> None:
    """GIVEN 50 concurrent callers (own connections, like separate Lambdas) each trying 10 takes
    WHEN the limit is 137 per minute THEN exactly 137 are granted and the counter says 137."""
    clock = FakeClock(MINUTE_START)
    limit = 137
    barrier = threading.Barrier(callers)

    def caller(_: int) -> int:
        quotas = backend.quotas(clock)  # a connection of its own
        barrier.wait()
        return sum(quotas.try_take("yahoo", QuotaLimits(limit, 100_000)).granted for _ in range(10))

    with ThreadPoolExecutor(max_workers=callers) as pool:
        granted = sum(pool.map(caller, range(callers)))

    assert granted == limit
    usage = backend.quotas(clock).usage("yahoo")
    assert usage is not None
    assert usage.minute_used == limit


def test_user_rate_limit_counts_per_subject_per_minute(backend: Backend) -> None:
    clock = FakeClock(MINUTE_START + 30)
    quotas = backend.quotas(clock)
    hits = [quotas.hit("user-1", 3) for _ in range(4)]
    assert [h.allowed for h in hits] == [True, True, True, False]
    assert [h.remaining for h in hits] == [2, 1, 0, 0]
    assert hits[-1].reset_seconds == 30
    assert quotas.hit("user-2", 3).allowed
    clock.now += 60
    assert quotas.hit("user-1", 3).allowed


def test_upstream_units_are_charged_to_the_same_budget(redis_client: redis.Redis) -> None:
    quotas = RedisQuotas(redis_client, key_prefix="q:", clock=FakeClock(MINUTE_START + 5))
    assert quotas.hit("user-1", 25).remaining == 24
    assert quotas.hit("user-1", 25, units=20).remaining == 4  # a miss's upstream call
    assert quotas.hit("user-1", 25).allowed
    refused = quotas.hit("user-1", 25, units=10)
    assert (refused.allowed, refused.remaining) == (False, 0)
    ttl = redis_client.pttl(f"q:ratelimit:user-1:{int(MINUTE_START // 60)}")
    assert 0 < ttl <= 60_000, "the window's key expires with its minute"


def test_the_in_process_fallback_is_bounded_in_subjects() -> None:
    limiter = LocalRateLimiter(clock=FakeClock(), max_subjects=2)
    assert limiter.add("a", 1, 5).allowed
    assert limiter.add("b", 1, 5).allowed
    assert not limiter.add("c", 1, 5).allowed, "a flood of new identities gets no free pass"
    assert limiter.add("a", 1, 5).allowed


def test_odd_subjects_are_hashed_into_bounded_keys(redis_client: redis.Redis) -> None:
    quotas = RedisQuotas(redis_client, key_prefix="q:", clock=FakeClock())
    quotas.hit("evil\r\nsubject with spaces " + "x" * 500, 10)
    keys = [k.decode() if isinstance(k, bytes) else k for k in redis_client.keys("q:ratelimit:*")]
    assert len(keys) == 1
    assert keys[0].startswith("q:ratelimit:sha256-")
    assert len(keys[0]) < 120


def _breaker(client: redis.Redis, clock: Callable[[], float], threshold: int = 3) -> RedisCircuitBreaker:
    return RedisCircuitBreaker(client, key_prefix="b:", failure_threshold=threshold, cooldown_seconds=30, clock=clock)


def test_breaker_opens_after_consecutive_failures_and_refuses_during_cooldown(backend: Backend) -> None:
    clock = FakeClock()
    breaker = backend.breaker(clock)
    assert breaker.record_failure("yahoo", "HTTP 503") is None
    assert breaker.record_failure("yahoo", "HTTP 503") is None
    assert breaker.record_failure("yahoo", "HTTP 503") is BreakerState.OPEN
    assert not breaker.allow("yahoo")
    status = breaker.status("yahoo")
    assert status is not None
    assert status.state is BreakerState.OPEN
    assert status.open_until == clock.now + 30
    assert status.last_error == "HTTP 503"
    assert breaker.allow("fmp"), "breakers are per vendor"


def test_a_success_resets_the_failure_count(backend: Backend) -> None:
    breaker = backend.breaker(FakeClock())
    breaker.record_failure("yahoo", "x")
    breaker.record_failure("yahoo", "x")
    breaker.record_success("yahoo")
    breaker.record_failure("yahoo", "x")
    breaker.record_failure("yahoo", "x")
    assert breaker.allow("yahoo")


def test_after_cooldown_exactly_one_concurrent_caller_probes(backend: Backend) -> None:
    clock = FakeClock()
    breaker = backend.breaker(clock, threshold=1)
    breaker.record_failure("fmp", "HTTP 500")
    clock.now += 31
    barrier = threading.Barrier(20)

    def caller(_: int) -> bool:
        allowed = backend.breaker(clock, threshold=1)  # a connection of its own
        barrier.wait()
        return allowed.allow("fmp")

    with ThreadPoolExecutor(max_workers=20) as pool:
        verdicts = list(pool.map(caller, range(20)))

    assert verdicts.count(True) == 1
    status = breaker.status("fmp")
    assert status is not None
    assert status.state is BreakerState.HALF_OPEN


def test_probe_success_closes_and_probe_failure_reopens(backend: Backend) -> None:
    clock = FakeClock()
    breaker = backend.breaker(clock, threshold=1)
    breaker.record_failure("tiingo", "timeout")
    clock.now += 31
    assert breaker.allow("tiingo")
    assert breaker.record_failure("tiingo", "timeout again") is BreakerState.OPEN
    assert not breaker.allow("tiingo")
    clock.now += 31
    assert breaker.allow("tiingo")
    assert breaker.record_success("tiingo") is BreakerState.HALF_OPEN
    assert breaker.allow("tiingo")
    assert breaker.allow("tiingo")
    status = breaker.status("tiingo")
    assert status is not None
    assert status.state is BreakerState.CLOSED


def test_unreachable_redis_grants_vendor_quotas_keeps_breakers_closed_but_still_limits_users() -> None:
    """The documented degraded mode: shared vendor counts cannot be kept, so quotas grant (degraded) and
    breakers allow; the per-user budget falls back to this container's own count and still refuses."""
    dead = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.1, socket_connect_timeout=0.1)
    clock = FakeClock(MINUTE_START + 10)
    quotas = RedisQuotas(dead, key_prefix="q:", clock=clock)
    decision = quotas.try_take("yahoo", QuotaLimits(1, 1))
    assert decision.granted
    assert decision.degraded
    assert quotas.usage("yahoo") is None
    hits = [quotas.hit("user", 2) for _ in range(3)]
    assert [h.allowed for h in hits] == [True, True, False]
    assert hits[-1].reset_seconds == 50
    assert quotas.hit("user", 2, units=0).remaining == 0
    assert quotas.hit("other-user", 2).allowed, "per subject"
    clock.now += 60
    assert quotas.hit("user", 2).allowed, "a new minute, a new budget"
    breaker = RedisCircuitBreaker(dead, key_prefix="b:", failure_threshold=1, cooldown_seconds=30)
    assert breaker.record_failure("yahoo", "x") is None
    assert breaker.allow("yahoo")
