"""The Cache contract: RedisCache against a real Redis server (the suite's own, on a free port), and the
InMemoryCache fake through every test that does not look at Redis itself (``make_cache``/``cache`` are
parametrised over both; ``redis_cache`` is the real adapter alone)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Protocol

import pytest
import redis
from pydantic import JsonValue

from chalicelib.adapters.redis_cache import RedisCache
from chalicelib.ports import Cache
from tests.fakes.cache import InMemoryCache
from tests.redis_counting import CountingConnection


class MakeCache(Protocol):
    def __call__(self, **kwargs: Any) -> Cache: ...


@pytest.fixture(params=["redis", "in_memory"])
def make_cache(request: pytest.FixtureRequest, redis_client: redis.Redis) -> MakeCache:
    """A Cache of the parametrised kind; kwargs are the adapters' shared knobs (clock, hot set)."""

    def make(**kwargs: Any) -> Cache:
        if request.param == "in_memory":
            kwargs.setdefault("clock", time.time)  # the tests that wait, wait in real time
            return InMemoryCache(**kwargs)
        return RedisCache(redis_client, key_prefix="t1:", **kwargs)

    return make


@pytest.fixture
def cache(make_cache: MakeCache) -> Cache:
    return make_cache()


@pytest.fixture
def redis_cache(redis_client: redis.Redis) -> RedisCache:
    return RedisCache(redis_client, key_prefix="t1:")


def test_set_then_get_returns_value_with_its_freshness(cache: Cache) -> None:
    before = time.time()
    cache.set("quote:AAPL", '{"x":1}', fresh_ttl_seconds=60, stale_ttl_seconds=600)
    entry = cache.get("quote:AAPL")
    assert entry is not None
    assert entry.value == '{"x":1}'
    assert before <= entry.stored_at <= time.time()
    assert entry.fresh_until == pytest.approx(entry.stored_at + 60)
    assert entry.is_fresh(entry.stored_at + 59.9)
    assert not entry.is_fresh(entry.stored_at + 60)


def test_a_json_value_is_stored_nested_in_one_document_and_read_back_as_it_was(
    redis_cache: RedisCache, redis_client: redis.Redis
) -> None:
    value: JsonValue = {"data": {"symbol": "AAPL", "price": 1.5, "tags": ["a", None]}, "source": "yahoo"}
    redis_cache.set("quote:AAPL", value, fresh_ttl_seconds=60, stale_ttl_seconds=600)

    document = json.loads(redis_client.get("t1:quote:AAPL"))  # type: ignore[arg-type]

    # One document: the value is nested as an object, not JSON inside a string (decoded twice on a hit).
    assert document["v"] == value
    assert set(document) == {"v", "s", "f"}
    entry = redis_cache.get("quote:AAPL")
    assert entry is not None
    assert entry.value == value
    assert redis_cache.get_many(["quote:AAPL"])["quote:AAPL"].value == value


def test_keys_use_the_spec_scheme_under_the_prefix(redis_cache: RedisCache, redis_client: redis.Redis) -> None:
    redis_cache.set("quote:AAPL", "v", fresh_ttl_seconds=60, stale_ttl_seconds=600)
    assert redis_client.exists("t1:quote:AAPL") == 1
    assert redis_client.exists("quote:AAPL") == 0


def test_redis_ttl_covers_freshness_plus_stale_window(redis_cache: RedisCache, redis_client: redis.Redis) -> None:
    redis_cache.set("quote:AAPL", "v", fresh_ttl_seconds=60, stale_ttl_seconds=600)
    ttl_ms = redis_client.pttl("t1:quote:AAPL")
    assert 659_000 < ttl_ms <= 660_000


def test_value_disappears_after_the_stale_window(cache: Cache) -> None:
    cache.set("quote:AAPL", "v", fresh_ttl_seconds=0.05, stale_ttl_seconds=0.1)
    assert cache.get("quote:AAPL") is not None
    time.sleep(0.3)
    assert cache.get("quote:AAPL") is None


def test_missing_key_is_none(cache: Cache) -> None:
    assert cache.get("quote:NOPE") is None


def test_unreadable_entry_is_a_miss(redis_cache: RedisCache, redis_client: redis.Redis) -> None:
    redis_client.set("t1:quote:AAPL", b"\x00not json")
    assert redis_cache.get("quote:AAPL") is None


def test_prefixes_isolate_tenants(redis_client: redis.Redis) -> None:
    first, second = RedisCache(redis_client, key_prefix="a:"), RedisCache(redis_client, key_prefix="b:")
    first.set("quote:AAPL", "from-a", fresh_ttl_seconds=60, stale_ttl_seconds=60)
    assert second.get("quote:AAPL") is None


def test_lock_is_exclusive_until_released(cache: Cache) -> None:
    token = cache.acquire_lock("quote:AAPL", ttl_seconds=5)
    assert token is not None
    assert cache.acquire_lock("quote:AAPL", ttl_seconds=5) is None
    cache.release_lock("quote:AAPL", token)
    assert cache.acquire_lock("quote:AAPL", ttl_seconds=5) is not None


def test_lock_expires_on_its_own(cache: Cache) -> None:
    assert cache.acquire_lock("quote:AAPL", ttl_seconds=0.1) is not None
    time.sleep(0.25)
    assert cache.acquire_lock("quote:AAPL", ttl_seconds=5) is not None


def test_release_with_a_stale_token_leaves_the_new_holders_lock(cache: Cache) -> None:
    old = cache.acquire_lock("quote:AAPL", ttl_seconds=0.1)
    assert old is not None
    time.sleep(0.25)
    new = cache.acquire_lock("quote:AAPL", ttl_seconds=5)
    assert new is not None
    cache.release_lock("quote:AAPL", old)  # the slow first holder finishes late
    assert cache.acquire_lock("quote:AAPL", ttl_seconds=5) is None


def test_only_one_of_many_concurrent_callers_gets_the_lock(redis_url: str, redis_client: redis.Redis) -> None:
    winners: list[str] = []
    barrier = threading.Barrier(20)

    def contend() -> None:
        own = RedisCache(redis.Redis.from_url(redis_url), key_prefix="t1:")  # one client per "Lambda"
        barrier.wait()
        token = own.acquire_lock("quote:AAPL", ttl_seconds=5)
        if token is not None:
            winners.append(token)

    threads = [threading.Thread(target=contend) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1


def test_many_locks_are_taken_and_released_in_one_round_trip_each(
    counting_client: redis.Redis, redis_client: redis.Redis
) -> None:
    cache = RedisCache(counting_client, key_prefix="t1:")
    other = RedisCache(redis_client, key_prefix="t1:")
    held = other.acquire_lock("quote:MSFT", ttl_seconds=5)
    assert held is not None
    CountingConnection.writes = 0

    tokens = cache.acquire_locks(["quote:AAPL", "quote:MSFT", "quote:NVDA"], ttl_seconds=5)

    assert CountingConnection.writes == 1
    assert tokens["quote:MSFT"] is None  # another caller holds it
    mine = {key: token for key, token in tokens.items() if token is not None}
    assert set(mine) == {"quote:AAPL", "quote:NVDA"}
    assert 0 < redis_client.pttl("t1:lock:quote:AAPL") <= 5000
    assert other.acquire_lock("quote:AAPL", ttl_seconds=5) is None
    CountingConnection.writes = 0
    cache.release_locks({**mine, "quote:MSFT": "not-the-holders-token"})
    assert CountingConnection.writes == 1
    assert other.acquire_lock("quote:AAPL", ttl_seconds=5) is not None
    assert other.acquire_lock("quote:MSFT", ttl_seconds=5) is None  # a wrong token releases nothing
    other.release_lock("quote:MSFT", held)
    assert other.acquire_lock("quote:MSFT", ttl_seconds=5) is not None


def test_lookup_counters_per_kind(cache: Cache) -> None:
    for hit in (True, True, False):
        cache.record_lookup("quote", hit=hit)
    cache.record_lookup("profile", hit=False)
    counters = cache.lookup_counters()
    assert counters is not None
    assert (counters["quote"].hits, counters["quote"].misses) == (2, 1)
    assert (counters["profile"].hits, counters["profile"].misses) == (0, 1)


def test_writes_are_counted_per_kind_with_the_write_itself(cache: Cache) -> None:
    cache.set("profile:AAPL", "{}", fresh_ttl_seconds=60, stale_ttl_seconds=60)
    cache.set("market:indices", "{}", fresh_ttl_seconds=60, stale_ttl_seconds=60)
    cache.set_many({"quote:AAPL": "{}", "quote:MSFT": "{}"}, fresh_ttl_seconds=60, stale_ttl_seconds=60)
    cache.set_many({"unknown:quote:NOPE": ""}, fresh_ttl_seconds=60, stale_ttl_seconds=0)
    counters = cache.lookup_counters()
    assert counters is not None
    writes = {kind: c.writes for kind, c in counters.items()}
    assert writes == {"profile": 1, "indices": 1, "quote": 2, "unknown": 1}
    assert cache.get("quote:MSFT") is not None


# --- Redis unreachable ---------------------------------------------------------------------------


@pytest.fixture
def dead_redis_url() -> str:
    """A port where nothing listens (bound, then closed), so connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def blackhole_redis_url() -> Iterator[str]:
    """A server that accepts connections and never answers: the socket timeout must fire."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


def test_unreachable_redis_degrades_every_operation(dead_redis_url: str) -> None:
    cache = RedisCache.from_url(dead_redis_url, key_prefix="t1:", socket_timeout_seconds=0.2)
    assert cache.get("quote:AAPL") is None
    assert cache.available is False
    cache.set("quote:AAPL", "v", fresh_ttl_seconds=60, stale_ttl_seconds=60)  # dropped, no exception
    assert cache.acquire_lock("quote:AAPL", ttl_seconds=5) is not None  # nothing to coordinate with
    cache.record_lookup("quote", hit=False)
    assert cache.lookup_counters() is None
    # No hot set, and reads still answer (as misses) instead of raising.
    assert cache.get_many(["quote:AAPL"], touch_hot=["AAPL"]) == {}
    cache.forget_hot(["AAPL"])
    assert cache.hot_symbols(10) == []
    tokens = cache.acquire_locks(["quote:AAPL", "quote:MSFT"], ttl_seconds=5)
    assert all(token is not None for token in tokens.values())
    assert len(tokens) == 2
    cache.release_locks({k: t for k, t in tokens.items() if t is not None})  # dropped, no exception


def test_hanging_redis_is_cut_off_by_the_socket_timeout_and_then_skipped(blackhole_redis_url: str) -> None:
    cache = RedisCache.from_url(blackhole_redis_url, key_prefix="t1:", socket_timeout_seconds=0.2)
    assert cache.get("quote:AAPL") is None  # returns (after one timeout) instead of hanging
    assert cache.available is False
    # While marked down, operations do not touch the socket at all.
    assert cache.get("quote:AAPL") is None
    assert cache.acquire_lock("quote:AAPL", ttl_seconds=5) is not None


def test_cache_recovers_after_the_backoff(redis_url: str, redis_client: redis.Redis) -> None:
    cache = RedisCache(redis_client, key_prefix="t1:", retry_after_failure_seconds=0.1)
    cache._failed("get", ConnectionError("simulated outage"))  # as if the last call had failed
    assert cache.available is False
    time.sleep(0.15)
    cache.set("quote:AAPL", "v", fresh_ttl_seconds=60, stale_ttl_seconds=60)
    assert cache.get("quote:AAPL") is not None


# --- hot set: what readers looked at recently --------------------------------------------------


def hot_members(redis_client: redis.Redis, prefix: str = "t1:") -> dict[str, float]:
    pairs: list[tuple[bytes, float]] = redis_client.zrange(f"{prefix}hot:quotes", 0, -1, withscores=True)  # type: ignore[assignment]
    return {member.decode(): score for member, score in pairs}


def test_a_read_marks_its_symbols_hot_in_the_same_round_trip(
    counting_client: redis.Redis, redis_client: redis.Redis
) -> None:
    cache = RedisCache(counting_client, key_prefix="t1:")
    cache.set("quote:AAPL", "a", fresh_ttl_seconds=60, stale_ttl_seconds=60)
    CountingConnection.writes = 0

    found = cache.get_many(["quote:AAPL", "quote:MSFT"], touch_hot=["AAPL", "MSFT"])

    assert CountingConnection.writes == 1
    assert set(found) == {"quote:AAPL"}
    assert found["quote:AAPL"].value == "a"
    members = hot_members(redis_client)
    assert set(members) == {"AAPL", "MSFT"}
    assert all(abs(score - time.time()) < 5 for score in members.values())
    # The set carries its own expiry (the window): nobody reading any more leaves no orphan.
    assert 0 < redis_client.pttl("t1:hot:quotes") <= 600_000


def test_a_plain_read_does_not_touch_the_hot_set(redis_cache: RedisCache, redis_client: redis.Redis) -> None:
    redis_cache.get_many(["quote:AAPL"])
    redis_cache.get("quote:AAPL")
    assert redis_client.exists("t1:hot:quotes") == 0
    assert redis_cache.hot_symbols(10) == []


def test_hot_symbols_come_most_recent_first_and_rereading_moves_a_symbol_up(make_cache: MakeCache) -> None:
    now = [1_000.0]
    cache = make_cache(clock=lambda: now[0])
    for symbol in ("AAPL", "MSFT", "NVDA"):
        cache.get_many([f"quote:{symbol}"], touch_hot=[symbol])
        now[0] += 1
    assert cache.hot_symbols(10) == ["NVDA", "MSFT", "AAPL"]
    cache.get_many(["quote:AAPL"], touch_hot=["AAPL"])
    assert cache.hot_symbols(10) == ["AAPL", "NVDA", "MSFT"]
    assert cache.hot_symbols(2) == ["AAPL", "NVDA"]


def test_the_hot_set_is_capped_by_dropping_the_least_recently_read(redis_client: redis.Redis) -> None:
    now = [1_000.0]
    cache = RedisCache(redis_client, key_prefix="t1:", hot_set_max_symbols=3, clock=lambda: now[0])
    for symbol in ("A", "B", "C", "D"):
        cache.get_many([], touch_hot=[symbol])
        now[0] += 1
    assert set(hot_members(redis_client)) == {"B", "C", "D"}
    cache.get_many([], touch_hot=["E", "F"])  # one call over the cap by more than one
    assert set(hot_members(redis_client)) == {"D", "E", "F"}
    assert cache.hot_symbols(10)[-1] == "D"


def test_symbols_not_read_within_the_window_expire(redis_client: redis.Redis) -> None:
    now = [1_000.0]
    cache = RedisCache(redis_client, key_prefix="t1:", hot_set_window_seconds=60, clock=lambda: now[0])
    cache.get_many([], touch_hot=["OLD"])
    now[0] += 30
    cache.get_many([], touch_hot=["MID"])
    now[0] += 31  # OLD was read 61 s ago, MID 31 s ago
    assert cache.hot_symbols(10) == ["MID"]  # filtered on read before any trim
    assert set(hot_members(redis_client)) == {"OLD", "MID"}
    cache.get_many([], touch_hot=["NEW"])  # the next touch trims by age
    assert set(hot_members(redis_client)) == {"MID", "NEW"}
    assert cache.hot_symbols(10) == ["NEW", "MID"]


def test_the_hot_set_key_expires_on_its_own_after_the_window(redis_client: redis.Redis) -> None:
    cache = RedisCache(redis_client, key_prefix="t1:", hot_set_window_seconds=0.1)
    cache.get_many([], touch_hot=["AAPL"])
    assert cache.hot_symbols(10) == ["AAPL"]
    time.sleep(0.25)
    assert redis_client.exists("t1:hot:quotes") == 0
    assert cache.hot_symbols(10) == []


def test_forgotten_symbols_leave_the_hot_set(cache: Cache) -> None:
    cache.get_many([], touch_hot=["AAPL", "NOPE"])
    cache.forget_hot(["NOPE"])
    assert cache.hot_symbols(10) == ["AAPL"]


def test_a_touching_read_on_an_unreachable_redis_is_a_miss_not_an_error(dead_redis_url: str) -> None:
    cache = RedisCache.from_url(dead_redis_url, key_prefix="t1:", socket_timeout_seconds=0.2)
    assert cache.get_many(["quote:AAPL"], touch_hot=["AAPL"]) == {}
    assert cache.available is False
