"""Copies of what the connection store holds, kept in the stream state (Redis) so the hot path reads one
Redis key instead of DynamoDB: the topic registry (which topics have subscribers in which shards, read by
every publish) and each shard's connections with their topic sets (read by every shard worker).

One mechanism for both (``StoreCopy``): DynamoDB stays the source of truth; a copy is read from it when
missing (first use, Redis restarted, keys expired) or old, into a new version opened *before* the read;
every subscribe, unsubscribe, disconnect and 410 cleanup records its change under the version current
*after* its DynamoDB writes (StreamState.record_copy_changes), so no write falls between the read and
the copy (see chalicelib/adapters/redis_stream_state.py). What a copy's members mean:

- ``registry``: member ``<shard>|<topic>`` — a pair some subscribe added. Removals are only counted (a
  pair's other subscribers are unknown here), so the copy may still name a pair nobody holds (a worker
  then finds nobody to send to) until it is read again; a copy nothing was removed from stays exact.
- ``shard:<n>``: member ``c|<connection>`` — the connection's record (format, expiries) as JSON, written
  with its subscribes; ``t|<connection>|<topic>`` — ``1`` subscribed, ``0`` unsubscribed;
  ``x|<connection>`` — removed (disconnect, 410, closed by the service). Exact under concurrent change: a
  connection subscribed after the read is added, an unsubscribed topic or a removed connection is taken
  out. A removal the copy missed (Redis down at that moment) costs one post answered 410, which removes
  the connection again and records it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from chalicelib.ports import ConnectionRecord, CopyChange, StreamState, TopicRegistry

_T = TypeVar("_T")

REGISTRY_COPY = "registry"


def shard_copy(shard: int) -> str:
    return f"shard:{shard}"


@dataclass(frozen=True)
class Copied(Generic[_T]):
    """A copy as its readers see it: the store's value with every recorded change applied."""

    value: _T
    built_at: float
    removals: int


@dataclass(frozen=True)
class StoreCopy(Generic[_T]):
    """One named copy: ``read_store`` reads the source of truth, ``encode`` turns it into the stored
    document, ``decode`` turns a document plus the recorded changes back into the value."""

    state: StreamState
    name: str
    _: KW_ONLY
    read_store: Callable[[], _T]
    encode: Callable[[_T], str]
    decode: Callable[[str, Mapping[str, str]], _T]
    clock: Callable[[], float]

    def cached(self) -> Copied[_T] | None:
        """The copy (one Redis round trip), or None when there is none (or Redis is down)."""
        stored = self.state.read_copy(self.name)
        if stored is None:
            return None
        return Copied(self.decode(stored.document, stored.changes), stored.built_at, stored.removals)

    def read(self) -> _T:
        """Read the store into a new version of the copy: the version is opened first, so a writer whose
        store writes the read misses records its change under it."""
        return self._read().value

    def _read(self) -> Copied[_T]:
        version = self.state.open_copy(self.name)
        built_at = self.clock()
        value = self.read_store()
        if version is not None:
            self.state.store_copy(self.name, version, self.encode(value), built_at=built_at)
        return Copied(value, built_at, removals=0)

    def current(self) -> _T:
        """The copy, or the store itself (copied for the next reader) when there is none."""
        return self.current_copy().value

    def current_copy(self) -> Copied[_T]:
        """``current()`` with when it was built and the removals noted since (what ``renew(seen=...)``
        decides by)."""
        cached = self.cached()
        return cached if cached is not None else self._read()

    def renew(
        self,
        *,
        max_age_seconds: float,
        max_age_with_removals_seconds: float | None = None,
        seen: Copied[_T] | None = None,
    ) -> bool:
        """Read the store again when the copy is missing, older than ``max_age_seconds``, or older than
        ``max_age_with_removals_seconds`` with removals noted since. True when it did. ``seen``: the copy
        as the caller read it a moment ago, which decides without a round trip unless removals noted
        since could change the answer (it noted none and its age lies between the two limits)."""
        with_removals = max_age_seconds if max_age_with_removals_seconds is None else max_age_with_removals_seconds

        def old(copied: Copied[_T], *, removals: bool) -> bool:
            return self.clock() - copied.built_at >= (with_removals if removals else max_age_seconds)

        copied = seen
        if copied is None or (not copied.removals and old(copied, removals=False) != old(copied, removals=True)):
            copied = self.cached()
        if copied is not None and not old(copied, removals=bool(copied.removals)):
            return False
        self.read()
        return True


# --- The topic registry's copy. ---


def encode_registry(registry: TopicRegistry) -> str:
    return json.dumps({str(shard): dict(c) for shard, c in registry.counts.items()}, separators=(",", ":"))


def decode_registry(document: str, changes: Mapping[str, str]) -> TopicRegistry:
    counts: dict[int, dict[str, int]] = {int(shard): dict(by_topic) for shard, by_topic in json.loads(document).items()}
    for member in changes:
        shard, _, topic = member.partition("|")
        by_topic = counts.setdefault(int(shard), {})
        by_topic[topic] = max(by_topic.get(topic, 0), 1)
    return TopicRegistry(counts)


def registry_added(shard: int, topics: Iterable[str]) -> CopyChange:
    return CopyChange(REGISTRY_COPY, {f"{shard}|{topic}": "1" for topic in topics})


def registry_removal(count: int = 1) -> CopyChange:
    return CopyChange(REGISTRY_COPY, removals=count)


# --- A shard's connections' copy. ---


def _header(record: ConnectionRecord) -> list[object]:
    return [
        record.user_id,
        record.connected_at.timestamp(),
        record.expires_at,
        record.message_format,
        record.token_expires_at,
    ]


def _record(connection_id: str, shard: int, header: Sequence[object], topics: Iterable[str]) -> ConnectionRecord:
    user_id, connected_at, expires_at, message_format, token_expires_at = header
    return ConnectionRecord(
        connection_id=connection_id,
        user_id=str(user_id),
        connected_at=datetime.fromtimestamp(float(str(connected_at)), UTC),
        expires_at=int(str(expires_at)),
        message_format=str(message_format),
        shard=shard,
        token_expires_at=None if token_expires_at is None else int(str(token_expires_at)),
        topics=frozenset(topics),
    )


def encode_shard(records: Sequence[ConnectionRecord]) -> str:
    return json.dumps([[r.connection_id, *_header(r), sorted(r.topics)] for r in records], separators=(",", ":"))


def shard_decoder(shard: int) -> Callable[[str, Mapping[str, str]], list[ConnectionRecord]]:
    def decode(document: str, changes: Mapping[str, str]) -> list[ConnectionRecord]:
        headers: dict[str, list[object]] = {}
        topics: dict[str, set[str]] = {}
        for connection_id, *header, held in json.loads(document):
            headers[connection_id] = header
            topics[connection_id] = set(held)
        removed: set[str] = set()
        for member, value in changes.items():
            kind, _, rest = member.partition("|")
            if kind == "c":
                headers.setdefault(rest, json.loads(value))
            elif kind == "x":
                removed.add(rest)
            elif kind == "t":
                connection_id, _, topic = rest.partition("|")
                held = topics.setdefault(connection_id, set())
                if value == "1":
                    held.add(topic)
                else:
                    held.discard(topic)
        return [
            _record(connection_id, shard, header, topics.get(connection_id, ()))
            for connection_id, header in headers.items()
            if connection_id not in removed
        ]

    return decode


def shard_subscribed(record: ConnectionRecord, topics: Iterable[str]) -> CopyChange:
    members = {f"t|{record.connection_id}|{topic}": "1" for topic in topics}
    members[f"c|{record.connection_id}"] = json.dumps(_header(record), separators=(",", ":"))
    return CopyChange(shard_copy(record.shard), members)


def shard_unsubscribed(record: ConnectionRecord, topics: Iterable[str]) -> CopyChange:
    return CopyChange(shard_copy(record.shard), {f"t|{record.connection_id}|{topic}": "0" for topic in topics}, 1)


def shard_removed(connection_ids: Iterable[str], shard: int) -> CopyChange:
    members = {f"x|{connection_id}": "1" for connection_id in connection_ids}
    return CopyChange(shard_copy(shard), members, len(members))
