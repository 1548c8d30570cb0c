"""RedisStreamState against a real Redis server (the suite's own): compare-and-set of the last published
fingerprint, per-minute delivery counters, and degrading when Redis is unreachable."""

from __future__ import annotations

import threading

import redis

from chalicelib.adapters.redis_stream_state import RedisStreamState
from infra.local.run import free_port

MINUTE = 60.0


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_fingerprint_is_claimed_once_until_it_changes(redis_client: redis.Redis) -> None:
    state = RedisStreamState(redis_client, key_prefix="t:")
    assert state.claim_change("quote:AAPL", "v1") is True
    assert state.claim_change("quote:AAPL", "v1") is False
    assert state.claim_change("quote:AAPL", "v2") is True
    assert state.claim_change("quote:MSFT", "v2") is True  # per topic
    state.forget("quote:AAPL")
    assert state.claim_change("quote:AAPL", "v2") is True


def test_racing_publishers_send_a_change_once(redis_client: redis.Redis) -> None:
    state = RedisStreamState(redis_client, key_prefix="t:")
    barrier = threading.Barrier(20)
    wins: list[bool] = []
    lock = threading.Lock()

    def claim() -> None:
        barrier.wait()
        won = state.claim_change("channel:indices", "same-value")
        with lock:
            wins.append(won)

    threads = [threading.Thread(target=claim) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == [False] * 19 + [True]


def test_counters_sum_the_last_sixty_minutes(redis_client: redis.Redis) -> None:
    clock = Clock()
    state = RedisStreamState(redis_client, key_prefix="t:", clock=clock)
    state.add_counts({"sent": 10, "gone": 1, "failed": 0})
    clock.now += 30 * MINUTE
    state.add_counts({"sent": 5, "failed": 2})
    assert state.counts_last_hour() == {"sent": 15, "gone": 1, "failed": 2}
    clock.now += 31 * MINUTE  # the first minute's counts are now more than an hour old
    assert state.counts_last_hour() == {"sent": 5, "gone": 0, "failed": 2}
    assert 0 < redis_client.ttl("t:ws:count:sent:" + str(int(clock.now // 60) - 31)) <= 2 * 3600


def test_unreachable_redis_resends_rather_than_loses_and_reports_no_counts() -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
    state = RedisStreamState(dead, key_prefix="t:")
    assert state.claim_change("quote:AAPL", "v1") is True
    assert state.claim_change("quote:AAPL", "v1") is True  # cannot tell: send again
    state.add_counts({"sent": 1})
    assert state.counts_last_hour() is None
