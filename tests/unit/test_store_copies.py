"""The shard worker's copy of its shard's connections (services/store_copies.py) on fakes: read from the
store (the source of truth) when missing or old, then from the copy only; kept exact by subscribe,
unsubscribe, disconnect and 410 cleanup, including changes made while a read is in progress. Over moto
and a real Redis: tests/app/test_sharded_fanout.py; the copy's storage: tests/contract/test_redis_stream_state.py."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime

import pytest

from chalicelib.models.streaming import quote_update
from chalicelib.ports import ConnectionRecord, CopyChange, StoredCopy, TopicRegistry, shard_for
from chalicelib.services import fanout
from chalicelib.services.store_copies import (
    decode_registry,
    encode_registry,
    encode_shard,
    shard_copy,
    shard_decoder,
)
from tests.unit.test_streaming_service import World, _quote_response, _world

SHARDS = 4  # _world's shard count


@pytest.fixture
def world() -> World:
    return _world()


class ShardReads:
    """Counts the store's reads of a shard's connections (what the copy saves)."""

    def __init__(self, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = world.store.connections_in_shard

        def counted(shard: int, *, now: float) -> Iterator[ConnectionRecord]:
            self.count += 1
            return real(shard, now=now)

        monkeypatch.setattr(world.store, "connections_in_shard", counted)


def _ids_in_one_shard(count: int) -> list[str]:
    ids = [f"c{i}" for i in range(200)]
    shard = shard_for(ids[0], SHARDS)
    return [cid for cid in ids if shard_for(cid, SHARDS) == shard][:count]


def _aapl_subscriber(world: World) -> str:
    """One connection (alice's), subscribed to AAPL."""
    (connection_id,) = _ids_in_one_shard(1)
    world.service.connect(connection_id, "alice")
    world.subscribe(connection_id, "AAPL")
    return connection_id


def _publish(world: World, price: float, symbol: str = "AAPL") -> None:
    world.broadcaster.clear()
    world.service.publish([quote_update(_quote_response(world, price, symbol))], world.broadcaster)


def _prices(world: World, connection_id: str) -> list[float]:
    return [m["data"]["quote"]["price"] for m in world.broadcaster.messages_to(connection_id)]


def test_the_worker_reads_the_store_once_then_its_copy(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = ShardReads(world, monkeypatch)
    a, b = _ids_in_one_shard(2)
    world.service.connect(a, "alice")
    world.subscribe(a, "AAPL")
    _publish(world, 191.0)
    assert reads.count == 1, "no copy yet: the shard is read from the store"
    assert _prices(world, a) == [191.0]

    world.service.connect(b, "bob")
    world.subscribe(b, "AAPL")  # subscribed after the copy was made
    _publish(world, 192.0)
    assert reads.count == 1, "then the copy only"
    assert (_prices(world, a), _prices(world, b)) == ([192.0], [192.0]), "the later subscriber gets its frame"


def test_an_unsubscribed_topic_and_a_disconnected_connection_get_nothing_from_the_copy(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = ShardReads(world, monkeypatch)
    a, b, c = _ids_in_one_shard(3)
    for cid, user in ((a, "alice"), (b, "bob"), (c, "carol")):
        world.service.connect(cid, user)
        world.subscribe(cid, "AAPL", "MSFT")
    _publish(world, 191.0)
    assert reads.count == 1

    world.send(a, {"type": "unsubscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}})
    world.service.disconnect(b)
    _publish(world, 192.0)
    assert reads.count == 1, "the copy was kept, not re-read"
    assert (_prices(world, a), _prices(world, b), _prices(world, c)) == ([], [], [192.0])
    _publish(world, 412.0, "MSFT")
    assert (_prices(world, a), _prices(world, b), _prices(world, c)) == ([412.0], [], [412.0])

    world.subscribe(a, "AAPL")  # subscribed again after the unsubscribe: the last change wins
    _publish(world, 193.0)
    assert _prices(world, a) == [193.0]


def test_a_removal_the_copy_missed_costs_one_410_which_cleans_it_up(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _ids_in_one_shard(2)
    for cid, user in ((a, "alice"), (b, "bob")):
        world.service.connect(cid, user)
        world.subscribe(cid, "AAPL")
    _publish(world, 191.0)
    # The client left and Redis was unreachable when its removal was recorded: the copy still names it.
    world.state.down = True
    world.service.disconnect(b)
    world.state.down = False
    world.broadcaster.gone.add(b)
    world.broadcaster.clear()
    world.service.publish([quote_update(_quote_response(world, 192.0))], world.broadcaster)
    assert world.broadcaster.messages_to(a)[-1]["data"]["quote"]["price"] == 192.0
    copy = world.state.read_copy(shard_copy(shard_for(b, SHARDS)))
    assert copy is not None
    assert copy.changes.get(f"x|{b}") == "1", "the 410 recorded the removal in the shard's copy"
    world.broadcaster.gone.discard(b)
    _publish(world, 193.0)
    assert _prices(world, b) == [], "and nothing more is posted to it"


def test_a_410_in_the_worker_removes_the_connection_from_the_store_and_the_copy(world: World) -> None:
    a, gone = _ids_in_one_shard(2)
    for cid, user in ((a, "alice"), (gone, "bob")):
        world.service.connect(cid, user)
        world.subscribe(cid, "AAPL", "MSFT")
    _publish(world, 191.0)
    world.broadcaster.gone.add(gone)
    _publish(world, 192.0)
    assert world.store.get_connection(gone, now=world.clock.now) is None
    assert world.store.topic_registry().totals() == {"quote:AAPL": 1, "quote:MSFT": 1}
    world.broadcaster.gone.discard(gone)
    _publish(world, 193.0)
    assert (_prices(world, a), _prices(world, gone)) == ([193.0], [])


def test_a_rounds_410s_in_one_shard_are_recorded_in_the_copies_in_one_call(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, *gone = _ids_in_one_shard(4)
    for cid in (a, *gone):
        world.service.connect(cid, f"user-{cid}")
        world.subscribe(cid, "AAPL")
    _publish(world, 191.0)
    recorded: list[list[CopyChange]] = []
    real = world.state.record_copy_changes

    def counted(changes: Sequence[CopyChange]) -> None:
        recorded.append(list(changes))
        real(changes)

    monkeypatch.setattr(world.state, "record_copy_changes", counted)
    world.broadcaster.gone.update(gone)
    _publish(world, 192.0)

    assert len(recorded) == 1, "one call for the round's three gone connections, not one each"
    assert all(world.store.get_connection(cid, now=world.clock.now) is None for cid in gone)
    copy = world.state.read_copy(shard_copy(shard_for(a, SHARDS)))
    assert copy is not None
    assert {member for member in copy.changes if member.startswith("x|")} == {f"x|{cid}" for cid in gone}
    assert copy.removals == 3
    registry = world.state.read_copy("registry")
    assert registry is not None
    assert registry.removals == 3, "the registry's copy counts each removal"
    world.broadcaster.gone.clear()
    _publish(world, 193.0)
    assert [_prices(world, cid) for cid in (a, *gone)] == [[193.0], [], [], []]


def test_a_missing_copy_is_read_from_the_store_again(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = ShardReads(world, monkeypatch)
    a = _aapl_subscriber(world)
    _publish(world, 191.0)
    # As if the copy's keys expired: no document for the current version nor the one before it (a
    # version whose reader is still reading falls back to the previous document).
    for _ in range(2):
        world.state.open_copy(shard_copy(shard_for(a, SHARDS)))
    _publish(world, 192.0)
    assert reads.count == 2
    assert _prices(world, a) == [192.0]
    world.state.down = True  # Redis unreachable: the store every time, and still delivered
    world.broadcaster.clear()
    world.service.deliver_shard("quote@1", 0, world.broadcaster)  # no stored round either: a no-op
    assert world.broadcaster.sent == []


def test_an_old_copy_is_read_again_after_the_round_not_before(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    reads = ShardReads(world, monkeypatch)
    a = _aapl_subscriber(world)
    _publish(world, 191.0)
    world.clock.advance(fanout.SHARD_COPY_MAX_AGE_SECONDS - 200)
    _publish(world, 192.0)
    assert reads.count == 1, "young enough: kept"
    world.clock.advance(400)
    _publish(world, 193.0)
    assert _prices(world, a) == [193.0]
    assert reads.count == 2, "old: read again once the round was delivered"
    _publish(world, 194.0)
    assert reads.count == 2, "and the fresh copy is used from then on"


def test_a_subscribe_during_the_read_is_in_the_copy(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _ids_in_one_shard(2)
    world.service.connect(a, "alice")
    world.subscribe(a, "AAPL")
    world.service.connect(b, "bob")
    real = world.store.connections_in_shard

    def read_then_subscribe(shard: int, *, now: float) -> Iterator[ConnectionRecord]:
        records = list(real(shard, now=now))  # the read has seen the shard as it was...
        monkeypatch.setattr(world.store, "connections_in_shard", real)
        world.subscribe(b, "AAPL")  # ... when b subscribes (its writes land after the read)
        return iter(records)

    monkeypatch.setattr(world.store, "connections_in_shard", read_then_subscribe)
    _publish(world, 191.0)  # builds the copy, with b's subscribe in the middle
    _publish(world, 192.0)
    assert _prices(world, b)[-1] == 192.0, "b's subscribe was recorded under the version being read"


@pytest.mark.parametrize("removed", [False, True])
@pytest.mark.parametrize("age", [0, 299, 301, 1799, 1801])
def test_the_registry_copys_renewal_is_judged_by_the_copy_the_round_read(
    monkeypatch: pytest.MonkeyPatch, age: int, removed: bool
) -> None:
    world = _world()
    a, b = _ids_in_one_shard(2)
    for cid in (a, b):
        world.service.connect(cid, f"user-{cid}")
        world.subscribe(cid, "AAPL")
    update = quote_update(_quote_response(world, 191.0))  # (moves the clock on: before the copy is made)
    assert world.service.renew_registry_copy() is True, "no copy yet"
    if removed:
        world.service.disconnect(b)
    world.clock.advance(age)
    report = world.service.publish([update], world.broadcaster)
    reads: list[str] = []
    real = world.state.read_copy

    def counted(name: str) -> StoredCopy | None:
        reads.append(name)
        return real(name)

    monkeypatch.setattr(world.state, "read_copy", counted)

    renewed = world.service.renew_registry_copy(seen=report.registry)

    limit = fanout.REGISTRY_COPY_MAX_AGE_SECONDS if removed else fanout.REGISTRY_COPY_MAX_AGE_UNCHANGED_SECONDS
    assert renewed is (age >= limit), "renewed exactly when the copy's own age and removals say so"
    # Read again only where a removal since the round could change the answer.
    might_change = not removed and fanout.REGISTRY_COPY_MAX_AGE_SECONDS <= age < limit
    assert reads == (["registry"] if might_change else [])


def test_a_round_that_had_to_read_the_registry_judges_its_renewal_without_another_read(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a subscriber and no copy of the registry yet
    a = _aapl_subscriber(world)
    reads: list[str] = []
    real_copy, real_store = world.state.read_copy, world.store.topic_registry

    def counted(name: str) -> StoredCopy | None:
        if name == "registry":  # (the shard's delivery reads its own copy)
            reads.append(name)
        return real_copy(name)

    def counted_store() -> TopicRegistry:
        reads.append("store")
        return real_store()

    monkeypatch.setattr(world.state, "read_copy", counted)
    monkeypatch.setattr(world.store, "topic_registry", counted_store)

    # WHEN a round is published, then its renewal judged
    report = world.service.publish([quote_update(_quote_response(world, 192.0))], world.broadcaster)
    renewed = world.service.renew_registry_copy(seen=report.registry)

    # THEN the round read the store (its copy is the one it judged by), and the renewal needed no read
    assert report.registry is not None
    assert report.registry.removals == 0
    assert renewed is False
    assert reads == ["registry", "store"], "the round looked for the copy, read the store; the renewal read nothing"
    assert world.broadcaster.messages_to(a), "the round was delivered"


def test_the_copy_documents_round_trip() -> None:
    records = [
        ConnectionRecord(
            connection_id="c1",
            user_id="u1",
            connected_at=datetime(2026, 1, 1, tzinfo=UTC),
            expires_at=1_800_000_000,
            message_format="batch",
            shard=2,
            token_expires_at=1_800_000_100,
            topics=frozenset({"quote:AAPL", "channel:indices"}),
        )
    ]
    assert shard_decoder(2)(encode_shard(records), {}) == records
    registry = decode_registry(encode_registry(decode_registry('{"1":{"quote:A":2}}', {})), {})
    assert registry.counts == {1: {"quote:A": 2}}
    assert decode_registry(encode_registry(registry), {"3|quote:B": "1"}).counts == {
        1: {"quote:A": 2},
        3: {"quote:B": 1},
    }


def test_read_shards_drops_what_was_removed_past_the_service(world: World) -> None:
    a, b = _ids_in_one_shard(2)
    for cid, user in ((a, "alice"), (b, "bob")):
        world.service.connect(cid, user)
        world.subscribe(cid, "AAPL")
    _publish(world, 191.0)
    world.store.remove_connection(b)  # as the daily cleanup does, without the service
    copy = world.state.read_copy(shard_copy(shard_for(b, SHARDS)))
    assert copy is not None
    assert f"x|{b}" not in copy.changes, "nothing recorded the removal"
    world.service.read_shards()
    _publish(world, 192.0)
    assert (_prices(world, a), _prices(world, b)) == ([192.0], [])
