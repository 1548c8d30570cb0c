"""Real-time streaming: WebSocket connections, subscriptions, delivery (DynamoDB, API Gateway)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


def shard_for(key: str, count: int) -> int:
    """A stable bucket 0..count-1 for ``key`` (a connection id → its fan-out shard): the same in every
    process and Python version, unlike ``hash()``, which is salted per process."""
    if count < 1:
        raise ValueError("count must be at least 1")
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class ConnectionRecord:
    """One open API Gateway WebSocket connection of one user."""

    connection_id: str
    user_id: str
    connected_at: datetime
    expires_at: int  # epoch seconds; DynamoDB's TTL attribute (deletes late: readers filter on it)
    source_ip: str | None = None
    user_agent: str | None = None
    topics: frozenset[str] = frozenset()  # what it subscribes to (kept on the connection item)
    message_format: str = "spec"  # chalicelib.models.streaming.StreamFormat, chosen at $connect
    shard: int = 0  # its fan-out shard, fixed at $connect (services.streaming.shard_for)
    token_expires_at: int | None = None  # the $connect token's `exp` (epoch seconds): closed after it


@dataclass(frozen=True)
class StreamingStats:
    open_connections: int
    distinct_users: int
    subscribers_by_topic: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicRegistry:
    """Subscriber counts per shard and topic, as the registry holds them (only counts above zero)."""

    counts: Mapping[int, Mapping[str, int]] = field(default_factory=dict)  # shard → topic → subscribers

    def topics(self) -> list[str]:
        """Every topic with a subscriber in some shard, sorted."""
        return sorted({topic for by_topic in self.counts.values() for topic in by_topic})

    def shards_for(self, topics: Iterable[str]) -> list[int]:
        """The shards holding a subscriber of any of these topics (where a round must be dispatched)."""
        wanted = set(topics)
        return sorted(shard for shard, by_topic in self.counts.items() if wanted.intersection(by_topic))

    def totals(self) -> dict[str, int]:
        """Subscribers per topic over all shards."""
        totals: dict[str, int] = {}
        for by_topic in self.counts.values():
            for topic, count in by_topic.items():
                totals[topic] = totals.get(topic, 0) + count
        return totals


@dataclass(frozen=True)
class StoredCopy:
    """A versioned copy, kept beside the stream state, of something the connection store holds (the store
    stays the source of truth): the topic registry, and each shard's connections with their topic sets.
    ``document`` is what was read from the store for ``version`` (at ``built_at``); ``changes`` is what
    writers recorded since, one value per member, the last write winning (the previous version's changes
    first, then this version's, so a write the read missed through an index's lag is still applied);
    ``removals`` counts the removals noted under both versions."""

    version: int
    document: str
    built_at: float
    changes: Mapping[str, str] = field(default_factory=dict)
    removals: int = 0


@dataclass(frozen=True)
class CopyChange:
    """What one write changed in one copy (``name``): members set to values, and removals to note."""

    name: str
    members: Mapping[str, str] = field(default_factory=dict)
    removals: int = 0


@dataclass(frozen=True)
class RegistryRepair:
    """What ``repair_registry`` changed: counters rewritten to the recount, and rewrites skipped because
    the counter moved while the recount ran (the next repair settles those)."""

    shards: int = 0
    topic_counts_fixed: int = 0
    counters_fixed: int = 0
    skipped: int = 0


class ConnectionStore(Protocol):
    """Connections, their subscriptions, the topic registry and the per-user connection slots (three
    DynamoDB tables in AWS).

    A topic is ``quote:<SYMBOL>`` or ``channel:<name>`` (chalicelib.models.streaming.topic_for_*).
    Every read of connections and subscriptions filters out items whose ``expires_at`` has passed,
    because DynamoDB's TTL deletes late (and moto never does). Nothing on a hot path Scans: fan-out reads
    are Queries on the topic or on the connection's shard, and the registry answers which topics have
    subscribers. The registry's counts follow every subscribe, unsubscribe and removal (never below
    zero); ``repair_registry`` recounts them from the connections."""

    def add_connection(self, record: ConnectionRecord, *, max_per_user: int | None = None) -> bool:
        """Store the connection in ``record.shard``; False (and nothing stored) when its user already
        holds ``max_per_user`` live connections. The cap holds under concurrent connects of one user
        (a conditional write, not a count then a put)."""
        ...

    def get_connection(self, connection_id: str, *, now: float) -> ConnectionRecord | None: ...

    def connections_of_user(self, user_id: str, *, now: float) -> list[ConnectionRecord]:
        """One Query on the by-user index."""
        ...

    def remove_connection(self, connection_id: str) -> int:
        """Delete the connection and every subscription of it, and release its registry counts and user
        slot; returns how many subscriptions went. Idempotent: only the call that deleted the item
        releases anything, so a $disconnect racing a 410 cleanup counts down once."""
        ...

    def connections_in_shard(self, shard: int, *, now: float) -> Iterator[ConnectionRecord]:
        """Every live connection of the shard with its topic set: paged Queries on the by-shard index
        (eventually consistent: a connection made a moment ago may be missing)."""
        ...

    def add_subscriptions(self, connection_id: str, topics: Sequence[str], *, expires_at: int) -> list[str] | None:
        """Subscribe; returns the connection's whole topic set afterwards, or None for an unknown connection."""
        ...

    def remove_subscriptions(self, connection_id: str, topics: Sequence[str]) -> list[str] | None:
        """Unsubscribe; returns the remaining topic set, or None for an unknown connection."""
        ...

    def topics_of(self, connection_id: str, *, now: float) -> list[str]:
        """What one connection subscribes to (one consistent read of its record; [] when expired)."""
        ...

    def subscribers(self, topic: str, *, now: float) -> list[str]:
        """Connection ids subscribed to ``topic``: one (paginated) Query on the table's partition key."""
        ...

    def subscribed_topics(self) -> list[str]:
        """Every topic with at least one subscriber, sorted (what the refresh jobs refresh): the
        registry, one Query per shard."""
        ...

    def topic_registry(self) -> TopicRegistry:
        """Subscriber counts per shard and topic (one Query per shard, no Scan)."""
        ...

    def repair_registry(self, *, now: float) -> RegistryRepair:
        """Recount the registry from the live connections of each shard (paged Queries per shard) and
        rewrite the counters that drifted (a process that died between writes, a race the conditional
        decrement refused). Run by the daily cleanup, after ``delete_expired``."""
        ...

    def delete_expired(self, *, now: float) -> tuple[int, int]:
        """Remove connections and subscriptions past their expiry (DynamoDB's TTL deletes late), and
        subscriptions whose connection no longer exists; returns (connections, subscriptions) removed."""
        ...

    def stats(self, *, top: int) -> StreamingStats:
        """Counts for /ws/stats from the registry's counters (no Scan). A connection whose $disconnect
        never came counts until the cleanup removes it."""
        ...


class DeliveryStatus(StrEnum):
    SENT = "sent"
    GONE = "gone"  # 410 GoneException: the client left; the caller removes the connection
    FAILED = "failed"  # still failing after retries


class Broadcaster(Protocol):
    """Posts messages to WebSocket clients (API Gateway management API in AWS)."""

    def send(self, connection_id: str, message: bytes) -> DeliveryStatus: ...

    def send_many(self, deliveries: Sequence[tuple[str, bytes]]) -> list[DeliveryStatus]:
        """Deliver concurrently (a bounded pool); statuses in the order of ``deliveries``."""
        ...

    def close(self, connection_id: str) -> DeliveryStatus:
        """Close the connection from the server side (API Gateway then runs ``$disconnect``): SENT when
        closed, GONE when it was already gone, FAILED when the management API refused or failed."""
        ...


# What StreamState.claim_sequences answers for a claim besides a first sequence number (>= 1).
SEQ_UNSEQUENCED = 0  # the backend is down: send anyway, with seq 0 ("not sequenced")
SEQ_DROP = -1  # the connection already got a newer round of this lane: do not send this one


@dataclass(frozen=True)
class SequenceClaim:
    """``count`` data messages about to go to one connection. ``lane`` names a publisher whose rounds
    are ordered (e.g. ``quote``): a claim whose ``round_id`` is not newer than the last one claimed for the
    connection in that lane is refused (SEQ_DROP). ``lane`` None (snapshots) is never refused."""

    connection_id: str
    count: int
    lane: str | None = None
    round_id: int = 0


@dataclass(frozen=True)
class StoredRound:
    """One publish round's changed items, stored once for its shard workers: each item's topic and its
    encoded spec message, with the round's lane, id and timestamp (what numbering and frames need)."""

    lane: str
    round_id: int
    timestamp: float
    items: tuple[tuple[str, bytes], ...]


class StreamState(Protocol):
    """What fan-out remembers between runs (Redis in AWS): the last value published per topic, per-minute
    delivery counters for /ws/stats, per-connection sequence numbers and resync allowance, and each
    round's changed items for its shard workers."""

    def put_round(self, key: str, stored: StoredRound, *, ttl_seconds: int) -> bool:
        """Store a round for its workers; False when the backend is down (the publisher then delivers
        the round itself)."""
        ...

    def get_round(self, key: str) -> StoredRound | None:
        """The stored round, or None when it expired, was never stored or the backend is down."""
        ...

    def claim_sequences(self, claims: Sequence[SequenceClaim], *, ttl_seconds: int) -> list[int]:
        """For each claim, atomically per connection: the first of ``count`` consecutive sequence numbers
        (the connection's counter advances by ``count``), SEQ_DROP, or SEQ_UNSEQUENCED when the backend is
        down. One round trip for all claims; the per-connection state expires ``ttl_seconds`` after its
        last claim."""
        ...

    def allow_resync(self, connection_id: str, *, interval_seconds: int) -> bool:
        """True at most once per ``interval_seconds`` per connection (True when the backend is down)."""
        ...

    def claim_changes(self, changes: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (topic, fingerprint), atomically per topic, record the fingerprint as the topic's
        latest; False where it already was (unchanged: nothing to send). One round trip for all. True
        when the backend is down (re-sending beats losing an update)."""
        ...

    def forget(self, topic: str) -> None:
        """Drop the topic's fingerprint (a delivery round failed: let the next refresh send again)."""
        ...

    def add_counts(self, counts: Mapping[str, int]) -> None: ...

    def counts_last_hour(self) -> Mapping[str, int] | None:
        """Totals per counter name over the last 60 minutes; None when the backend is down."""
        ...

    def read_copy(self, name: str) -> StoredCopy | None:
        """The current version of the copy ``name`` with the changes recorded since (one round trip);
        None when that version has no stored document yet or the backend is down."""
        ...

    def open_copy(self, name: str) -> int | None:
        """Open a new version of the copy ``name`` (changes from now on are recorded under it) before the
        store is read for it; None when the backend is down."""
        ...

    def store_copy(self, name: str, version: int, document: str, *, built_at: float) -> None: ...

    def record_copy_changes(self, changes: Sequence[CopyChange]) -> None:
        """Record each change under its copy's current version (one round trip for all), after the
        store's writes it mirrors."""
        ...
