"""The StreamState contract: RedisStreamState against a real Redis server (the suite's own), and the
InMemoryStreamState fake through every test that does not look at Redis itself (``make_state``): compare-and-set
of the last published fingerprint, per-minute delivery counters, per-connection sequence numbers and resync
allowance, and degrading when Redis is unreachable."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis

from chalicelib.adapters.redis_stream_state import RedisStreamState
from chalicelib.ports import SEQ_DROP, SEQ_UNSEQUENCED, CopyChange, SequenceClaim, StreamState
from infra.local.run import free_port
from tests.fakes.stream_state import InMemoryStreamState
from tests.redis_counting import CountingConnection

MINUTE = 60.0


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


MakeState = Callable[..., StreamState]


@pytest.fixture(params=["redis", "in_memory"])
def make_state(request: pytest.FixtureRequest, redis_client: redis.Redis) -> MakeState:
    """A StreamState of the parametrised kind: make_state(key_prefix, clock=...)."""

    def make(key_prefix: str, *, clock: Callable[[], float] | None = None) -> StreamState:
        if request.param == "in_memory":
            return InMemoryStreamState(clock=clock)
        return RedisStreamState(redis_client, key_prefix=key_prefix, **({"clock": clock} if clock else {}))

    return make


def _claim(state: StreamState, topic: str, fingerprint: str) -> bool:
    (changed,) = state.claim_changes([(topic, fingerprint)])
    return changed


def test_a_fingerprint_is_claimed_once_until_it_changes(make_state: MakeState) -> None:
    state = make_state("t:")
    assert _claim(state, "quote:AAPL", "v1") is True
    assert _claim(state, "quote:AAPL", "v1") is False
    assert _claim(state, "quote:AAPL", "v2") is True
    assert _claim(state, "quote:MSFT", "v2") is True  # per topic
    state.forget("quote:AAPL")
    assert _claim(state, "quote:AAPL", "v2") is True


def test_racing_publishers_send_a_change_once(make_state: MakeState) -> None:
    state = make_state("t:")
    barrier = threading.Barrier(20)
    wins: list[bool] = []
    lock = threading.Lock()

    def claim() -> None:
        barrier.wait()
        won = _claim(state, "channel:indices", "same-value")
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
    assert _claim(state, "quote:AAPL", "v1") is True
    assert _claim(state, "quote:AAPL", "v1") is True  # cannot tell: send again
    state.add_counts({"sent": 1})
    assert state.counts_last_hour() is None


# --- per-connection sequence numbers and resync allowance --------------------------------------------

TTL = 2 * 3600 + 600


def test_sequence_numbers_start_at_one_and_advance_by_the_number_of_messages(redis_client: redis.Redis) -> None:
    state = RedisStreamState(redis_client, key_prefix="t:")
    claims = [SequenceClaim("c1", 1), SequenceClaim("c2", 3)]
    assert state.claim_sequences(claims, ttl_seconds=TTL) == [1, 1]
    assert state.claim_sequences([SequenceClaim("c1", 2), SequenceClaim("c2", 1)], ttl_seconds=TTL) == [2, 4]
    assert state.claim_sequences([SequenceClaim("c1", 1)], ttl_seconds=TTL) == [4]
    # The state lives as long as a connection can (refreshed on every claim).
    assert TTL - 5 <= redis_client.ttl("t:ws:conn:c1") <= TTL


def test_a_round_not_newer_than_the_last_of_its_lane_is_dropped_without_using_a_number(
    make_state: MakeState,
) -> None:
    state = make_state("t:")
    assert state.claim_sequences([SequenceClaim("c", 2, "quote", 2000)], ttl_seconds=TTL) == [1]
    older = [SequenceClaim("c", 1, "quote", 1000), SequenceClaim("c", 1, "quote", 2000)]
    assert state.claim_sequences(older, ttl_seconds=TTL) == [SEQ_DROP, SEQ_DROP]
    # Lanes are independent, and snapshots (no lane) are never dropped.
    assert state.claim_sequences([SequenceClaim("c", 1, "channel:indices", 5)], ttl_seconds=TTL) == [3]
    assert state.claim_sequences([SequenceClaim("c", 1)], ttl_seconds=TTL) == [4]
    assert state.claim_sequences([SequenceClaim("c", 1, "quote", 2001)], ttl_seconds=TTL) == [5]


def test_concurrent_claims_on_one_connection_never_share_a_number(make_state: MakeState) -> None:
    state = make_state("t:")
    barrier = threading.Barrier(10)
    firsts: list[int] = []
    lock = threading.Lock()

    def claim() -> None:
        barrier.wait()
        (first,) = state.claim_sequences([SequenceClaim("busy", 3)], ttl_seconds=TTL)
        with lock:
            firsts.append(first)

    threads = [threading.Thread(target=claim) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(firsts) == list(range(1, 31, 3))  # ten disjoint runs of three: 1-3, 4-6, ... 28-30


def test_resync_is_allowed_once_per_interval(redis_client: redis.Redis) -> None:
    state = RedisStreamState(redis_client, key_prefix="t:")
    assert state.allow_resync("c1", interval_seconds=10) is True
    assert state.allow_resync("c1", interval_seconds=10) is False
    assert state.allow_resync("c2", interval_seconds=10) is True  # per connection
    assert 0 < redis_client.ttl("t:ws:resync:c1") <= 10
    redis_client.delete("t:ws:resync:c1")  # the interval has passed
    assert state.allow_resync("c1", interval_seconds=10) is True


def test_unreachable_redis_sends_unsequenced_and_allows_resync() -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
    state = RedisStreamState(dead, key_prefix="t:")
    claims = [SequenceClaim("c1", 2, "quote", 1), SequenceClaim("c2", 1)]
    assert state.claim_sequences(claims, ttl_seconds=TTL) == [SEQ_UNSEQUENCED, SEQ_UNSEQUENCED]
    assert state.allow_resync("c1", interval_seconds=10) is True


def test_a_rounds_claims_are_one_round_trip_each_topic_judged_on_its_own(counting_client: redis.Redis) -> None:
    state = RedisStreamState(counting_client, key_prefix="claims:")
    assert state.claim_changes([("quote:AAPL", "a1"), ("quote:MSFT", "m1")]) == [True, True]  # (loads the script)
    CountingConnection.writes = 0
    claimed = state.claim_changes([("quote:AAPL", "a1"), ("quote:MSFT", "m2"), ("quote:GOOGL", "g1")])
    assert claimed == [False, True, True]
    assert CountingConnection.writes == 1, "all of a round's claims go out in one round trip"
    assert state.claim_changes([]) == []


def test_each_scripted_call_is_one_round_trip_and_survives_a_server_that_forgot_its_scripts(
    counting_client: redis.Redis, redis_client: redis.Redis
) -> None:
    state = RedisStreamState(counting_client, key_prefix="trips:")
    # The first calls load the scripts (the server has not seen them).
    assert state.claim_changes([("quote:AAPL", "a1")]) == [True]
    assert state.claim_sequences([SequenceClaim("c0", 1)], ttl_seconds=TTL) == [1]
    state.record_copy_changes([CopyChange("shard:0", {"x|c0": "1"}, 1)])
    CountingConnection.writes = 0

    assert state.claim_changes([("quote:AAPL", "a1"), ("quote:MSFT", "m1")]) == [False, True]
    assert state.claim_sequences([SequenceClaim("c1", 2, "quote", 1)], ttl_seconds=TTL) == [1]
    state.record_copy_changes([CopyChange("registry", removals=1), CopyChange("shard:1", {"x|c1": "1"}, 1)])
    assert CountingConnection.writes == 3, "one round trip each: no SCRIPT EXISTS ahead of the pipeline"

    redis_client.script_flush()  # as after a restart: the server knows none of the scripts
    CountingConnection.writes = 0
    assert state.claim_changes([("quote:AAPL", "a2"), ("quote:MSFT", "m1")]) == [True, False], (
        "answered NOSCRIPT, each claim ran once: after the load"
    )
    assert CountingConnection.writes == 2, "the scripts loaded and the calls retried in one more round trip"
    CountingConnection.writes = 0
    assert state.claim_sequences([SequenceClaim("c1", 1, "quote", 2)], ttl_seconds=TTL) == [3]
    assert CountingConnection.writes == 2
    CountingConnection.writes = 0
    state.record_copy_changes([CopyChange("shard:1", {"x|c2": "1"}, 1)])
    assert CountingConnection.writes == 2
    copy = redis_client.hgetall("trips:ws:copy:{shard:1}+0")
    assert copy == {b"x|c1": b"1", b"x|c2": b"1"}
    assert redis_client.get("trips:ws:copy:{shard:1}-0") == b"2", "each removal counted once"


# --- versioned copies of the store (the registry's, each shard's) -----------------------------------


def test_a_copy_is_its_document_plus_the_changes_recorded_under_its_version_and_the_one_before(
    make_state: MakeState,
) -> None:
    state = make_state("t:copy:")
    assert state.read_copy("shard:3") is None, "no copy before the first read"
    state.record_copy_changes([CopyChange("shard:3", {"t|c0|quote:MSFT": "1"})])  # before any copy: version 0

    assert state.open_copy("shard:3") == 1
    assert state.read_copy("shard:3") is None, "opened but not stored yet: readers read the store themselves"
    # A write during the read (after the version was opened), and one to another copy.
    state.record_copy_changes(
        [CopyChange("shard:3", {"t|c1|quote:AAPL": "1", "c|c1": "[1]"}), CopyChange("registry", {"3|quote:AAPL": "1"})]
    )
    state.store_copy("shard:3", 1, '[["c2"]]', built_at=123.5)

    copy = state.read_copy("shard:3")
    assert copy is not None
    assert (copy.version, copy.document, copy.built_at) == (1, '[["c2"]]', 123.5)
    assert copy.changes == {"t|c0|quote:MSFT": "1", "t|c1|quote:AAPL": "1", "c|c1": "[1]"}, (
        "the previous version's changes too: a write the read missed through an index's lag is applied"
    )
    assert copy.removals == 0
    assert state.read_copy("registry") is None, "each name is a copy of its own"

    # The last write of a member wins; removals are counted.
    state.record_copy_changes([CopyChange("shard:3", {"t|c1|quote:AAPL": "0"}, removals=1)])
    state.record_copy_changes([CopyChange("shard:3", {"x|c2": "1"}, removals=1), CopyChange("shard:3")])
    again = state.read_copy("shard:3")
    assert again is not None
    assert again.changes["t|c1|quote:AAPL"] == "0"
    assert again.changes["x|c2"] == "1"
    assert again.removals == 2

    assert state.open_copy("shard:3") == 2
    # While version 2's reader is still reading the store, version 1's copy serves with every change since
    # (without it, every reader in that window would find no copy and read the store itself).
    meanwhile = state.read_copy("shard:3")
    assert meanwhile is not None
    assert (meanwhile.version, meanwhile.document, meanwhile.built_at) == (2, '[["c2"]]', 123.5)
    assert (meanwhile.changes, meanwhile.removals) == (again.changes, again.removals)
    state.store_copy("shard:3", 2, "[]", built_at=124.0)
    fresh = state.read_copy("shard:3")
    assert fresh is not None
    assert "t|c0|quote:MSFT" not in fresh.changes, "changes two versions old are no longer applied"
    assert fresh.changes["x|c2"] == "1"
    assert fresh.removals == 2, "the previous version's removals still count"
    assert state.open_copy("shard:3") == 3
    state.store_copy("shard:3", 3, "[]", built_at=125.0)
    settled = state.read_copy("shard:3")
    assert settled is not None
    assert (settled.changes, settled.removals) == ({}, 0)


def test_a_copys_changes_are_one_round_trip(counting_client: redis.Redis, redis_client: redis.Redis) -> None:
    state = RedisStreamState(counting_client, key_prefix="copytrip:")
    state.record_copy_changes([CopyChange("shard:0", {"c|w": "[]"})])  # (loads the script)
    CountingConnection.writes = 0
    state.record_copy_changes([CopyChange("registry", {"1|quote:A": "1"}), CopyChange("shard:1", {"c|x": "[]"})])
    assert CountingConnection.writes == 1
    assert 0 < redis_client.ttl("copytrip:ws:copy:{shard:1}+0") <= 3600, "changes expire with the copy"


def test_unreachable_redis_has_no_copy() -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2)
    state = RedisStreamState(dead, key_prefix="t:")
    assert state.open_copy("registry") is None
    state.store_copy("registry", 1, "{}", built_at=1.0)
    state.record_copy_changes([CopyChange("registry", {"0|quote:AAPL": "1"})])
    assert state.read_copy("registry") is None
