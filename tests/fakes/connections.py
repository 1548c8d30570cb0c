"""An in-memory ConnectionStore: connections with their topic sets, subscription items, the per-shard
topic registry, per-user slots (the cap, claimed atomically) and the totals /ws/stats shows, with the
expiry filtering and idempotent removal of DynamoDBConnectionStore.

Runs through the ConnectionStore contract tests with DynamoDBConnectionStore
(tests/contract/test_dynamodb_connection_store.py)."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC

from chalicelib.ports import ConnectionRecord, RegistryRepair, StreamingStats, TopicRegistry


def _live(expires_at: int, now: float) -> bool:
    return expires_at > math.floor(now)


class InMemoryConnectionStore:
    def __init__(self, *, shard_count: int = 16, clock: Callable[[], float] = time.time) -> None:
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        self._shard_count = shard_count
        self._clock = clock
        # Re-entrant: a connect at the cap removes the user's expired connections under the same lock.
        self._lock = threading.RLock()
        self._connections: dict[str, ConnectionRecord] = {}
        self._subscriptions: dict[tuple[str, str], int] = {}  # (topic, connection id) → expires_at
        self._registry: Counter[tuple[int, str]] = Counter()  # (shard, topic) → subscribers
        self._shard_connections: Counter[int] = Counter()  # shard → connections counted
        self._slots: dict[str, set[str]] = {}  # user → connection ids holding a slot

    # --- connections ------------------------------------------------------------------------------

    def add_connection(self, record: ConnectionRecord, *, max_per_user: int | None = None) -> bool:
        with self._lock:
            # As the real store: the item is written without topics, then the user's slot is claimed.
            # Stored as UTC text by the real store: read back in UTC (a naive time means UTC).
            connected_at = (
                record.connected_at.replace(tzinfo=UTC)
                if record.connected_at.tzinfo is None
                else record.connected_at.astimezone(UTC)
            )
            self._connections[record.connection_id] = replace(record, topics=frozenset(), connected_at=connected_at)
            slots = self._slots.setdefault(record.user_id, set())
            if record.connection_id in slots:  # a retried connect: its slot already counted
                return True
            if max_per_user is not None and len(slots) >= max_per_user:
                self._release_stale_slots(record.user_id)
                if len(slots) >= max_per_user:
                    del self._connections[record.connection_id]
                    return False
            slots.add(record.connection_id)
            self._shard_connections[record.shard] += 1
            return True

    def _release_stale_slots(self, user_id: str) -> None:
        now = self._clock()
        for connection_id in sorted(self._slots.get(user_id, set())):
            record = self._connections.get(connection_id)
            if record is None:
                self._slots[user_id].discard(connection_id)  # a removal that died between its writes
            elif not _live(record.expires_at, now):
                self.remove_connection(connection_id)

    def get_connection(self, connection_id: str, *, now: float) -> ConnectionRecord | None:
        with self._lock:
            record = self._connections.get(connection_id)
        return record if record is not None and _live(record.expires_at, now) else None

    def connections_of_user(self, user_id: str, *, now: float) -> list[ConnectionRecord]:
        with self._lock:
            return [r for r in self._connections.values() if r.user_id == user_id and _live(r.expires_at, now)]

    def connections_in_shard(self, shard: int, *, now: float) -> Iterator[ConnectionRecord]:
        with self._lock:
            records = sorted(
                (r for r in self._connections.values() if r.shard == shard and _live(r.expires_at, now)),
                key=lambda r: r.connection_id,
            )
        yield from records

    def remove_connection(self, connection_id: str) -> int:
        with self._lock:
            record = self._connections.pop(connection_id, None)
            if record is None:
                return 0  # already removed: nothing released twice
            for topic in record.topics:
                self._subscriptions.pop((topic, connection_id), None)
                self._decrement(record.shard, topic)
            slots = self._slots.get(record.user_id, set())
            if connection_id in slots:
                slots.discard(connection_id)
                if self._shard_connections[record.shard] > 0:
                    self._shard_connections[record.shard] -= 1
                if not slots:
                    del self._slots[record.user_id]
            return len(record.topics)

    def _decrement(self, shard: int, topic: str) -> None:
        # Never below zero (the real store's decrement is conditional on the count covering it).
        if self._registry[(shard, topic)] > 0:
            self._registry[(shard, topic)] -= 1

    # --- subscriptions ----------------------------------------------------------------------------

    def add_subscriptions(self, connection_id: str, topics: Sequence[str], *, expires_at: int) -> list[str] | None:
        wanted = list(dict.fromkeys(topics))
        with self._lock:
            record = self._connections.get(connection_id)
            if record is None:
                return None
            for topic in wanted:
                self._subscriptions[(topic, connection_id)] = expires_at
                if topic not in record.topics:
                    self._registry[(record.shard, topic)] += 1
            current = record.topics.union(wanted)
            self._connections[connection_id] = replace(record, topics=current)
            return sorted(current)

    def remove_subscriptions(self, connection_id: str, topics: Sequence[str]) -> list[str] | None:
        gone = list(dict.fromkeys(topics))
        with self._lock:
            for topic in gone:
                self._subscriptions.pop((topic, connection_id), None)
            record = self._connections.get(connection_id)
            if record is None:
                return None
            for topic in gone:
                if topic in record.topics:
                    self._decrement(record.shard, topic)
            current = record.topics.difference(gone)
            self._connections[connection_id] = replace(record, topics=current)
            return sorted(current)

    def topics_of(self, connection_id: str, *, now: float) -> list[str]:
        record = self.get_connection(connection_id, now=now)
        return sorted(record.topics) if record is not None else []

    def subscribers(self, topic: str, *, now: float) -> list[str]:
        with self._lock:
            return sorted(
                c for (t, c), expires_at in self._subscriptions.items() if t == topic and _live(expires_at, now)
            )

    # --- the registry -----------------------------------------------------------------------------

    def subscribed_topics(self) -> list[str]:
        return self.topic_registry().topics()

    def topic_registry(self) -> TopicRegistry:
        counts: dict[int, dict[str, int]] = {}
        with self._lock:
            for (shard, topic), count in self._registry.items():
                if count > 0 and shard < self._shard_count:
                    counts.setdefault(shard, {})[topic] = count
        return TopicRegistry(counts)

    def repair_registry(self, *, now: float) -> RegistryRepair:
        topic_fixed = counters_fixed = 0
        with self._lock:
            for shard in range(self._shard_count):
                live = list(self.connections_in_shard(shard, now=now))
                counted = Counter(topic for record in live for topic in record.topics)
                stored = {topic: n for (s, topic), n in self._registry.items() if s == shard}
                for topic in stored.keys() | counted.keys():
                    if stored.get(topic, 0) != counted[topic]:
                        topic_fixed += stored.get(topic, 0) != 0 or counted[topic] != 0
                        self._registry[(shard, topic)] = counted[topic]
                if self._shard_connections[shard] != len(live):
                    counters_fixed += 1
                    self._shard_connections[shard] = len(live)
        return RegistryRepair(shards=self._shard_count, topic_counts_fixed=topic_fixed, counters_fixed=counters_fixed)

    # --- cleanup and stats ------------------------------------------------------------------------

    def delete_expired(self, *, now: float) -> tuple[int, int]:
        with self._lock:
            expired = sorted(c for c, r in self._connections.items() if not _live(r.expires_at, now))
            subscriptions = sum(self.remove_connection(connection_id) for connection_id in expired)
            stale = [
                key
                for key, expires_at in self._subscriptions.items()
                if not _live(expires_at, now) or key[1] not in self._connections
            ]
            for key in stale:
                del self._subscriptions[key]
            return len(expired), subscriptions + len(stale)

    def stats(self, *, top: int) -> StreamingStats:
        registry = self.topic_registry()
        ranked = sorted(registry.totals().items(), key=lambda pair: (-pair[1], pair[0]))[: max(top, 0)]
        with self._lock:
            return StreamingStats(
                open_connections=sum(self._shard_connections.values()),
                distinct_users=sum(1 for slots in self._slots.values() if slots),
                subscribers_by_topic=dict(ranked),
            )
