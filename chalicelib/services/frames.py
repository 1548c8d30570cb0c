"""Frames: what one publish round (or one snapshot) puts on each connection, numbered and in order.

The reusable unit of fan-out, independent of how connections are found (a Query per topic today, a shard
worker's paged reads of its connections later):

1. ``FrameBuilder.for_round(targets, updates)``: for each target ``(connection id, format, topic set)``
   the messages it gets from the round's changed ``updates``: one per item for the spec format, one
   ``batch`` frame holding them all for the batch format, split into several when the encoded frame
   would exceed ``max_frame_bytes`` (API Gateway frames and bills in 32 KB steps). Each update is
   JSON-encoded once per round, however many connections get it; ``seq`` is spliced in per connection.
2. ``sequence(state, pending, lane=..., round_id=...)``: one atomic step per connection (StreamState,
   a Lua script in Redis, all connections in one pipelined round trip) that drops a round older than the
   last one the connection got in that lane and reserves one ``seq`` per message; renders the bytes.
3. ``send_in_order(broadcaster, outgoing)``: posts every connection's messages in ``seq`` order (its
   k-th message only after its (k-1)-th was answered), connections in parallel on the broadcaster's pool.

``deliver_round`` does the three for one round and returns what happened (a shard worker calls it with
its connections; the caller removes gone connections and re-arms ``undelivered_topics``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from chalicelib import observability
from chalicelib.models.streaming import StreamFormat, StreamUpdate
from chalicelib.ports import SEQ_DROP, Broadcaster, ConnectionRecord, DeliveryStatus, SequenceClaim, StreamState

logger = observability.logger

API_GATEWAY_FRAME_BYTES = 32 * 1024
_SEQ_RESERVE = len(str(2**63))  # room for any sequence number when sizing a frame before it has one


@dataclass(frozen=True)
class FrameTarget:
    """A connection a round may go to: its id, message format and what it subscribes to."""

    connection_id: str
    message_format: StreamFormat
    topics: frozenset[str]


@dataclass(frozen=True)
class Frame:
    """One data message before its ``seq``: the encoded update(s) it carries and their topics."""

    batch: bool
    parts: tuple[bytes, ...]
    topics: tuple[str, ...]
    timestamp: str  # the batch frame's own timestamp (ISO 8601 UTC)

    def render(self, seq: int) -> bytes:
        number = str(seq).encode()
        if not self.batch:
            # {"type":"quote_update","data":{...}} → {"type":"quote_update","data":{...},"seq":17}
            return self.parts[0][:-1] + b',"seq":' + number + b"}"
        return (
            b'{"type":"batch","seq":'
            + number
            + b',"timestamp":"'
            + self.timestamp.encode()
            + b'","data":{"updates":['
            + b",".join(self.parts)
            + b"]}}"
        )


@dataclass(frozen=True)
class PendingFrames:
    """One connection's messages of a round, in order, not yet numbered."""

    connection_id: str
    frames: tuple[Frame, ...]


@dataclass(frozen=True)
class Outgoing:
    """One connection's messages, numbered and encoded, to post in this order."""

    connection_id: str
    payloads: tuple[bytes, ...]
    topics: tuple[tuple[str, ...], ...]  # the topics each payload carries
    first_seq: int


def encode_items(updates: Sequence[StreamUpdate]) -> list[tuple[str, bytes]]:
    """Each update's topic and spec message, JSON-encoded once per round however many connections get it."""
    return [(update.topic, update.encoded()) for update in updates]


def iso_utc(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat().replace("+00:00", "Z")


def format_of(record: ConnectionRecord) -> StreamFormat:
    """The connection's stored message format."""
    try:
        return StreamFormat(record.message_format)
    except ValueError:  # written by a newer version: the spec format is what every client understands
        return StreamFormat.SPEC


class FrameBuilder:
    def __init__(self, *, max_frame_bytes: int = API_GATEWAY_FRAME_BYTES) -> None:
        self._max_frame_bytes = max_frame_bytes

    def for_round(
        self, targets: Sequence[FrameTarget], updates: Sequence[StreamUpdate], *, timestamp: float
    ) -> list[PendingFrames]:
        """Each target's messages for these changed updates (targets subscribed to none are left out)."""
        return self.for_items(targets, encode_items(updates), timestamp=timestamp)

    def for_items(
        self, targets: Sequence[FrameTarget], encoded: Sequence[tuple[str, bytes]], *, timestamp: float
    ) -> list[PendingFrames]:
        """As ``for_round``, from the round's items already encoded (topic, spec message), as stored."""
        stamp = iso_utc(timestamp)
        pending: list[PendingFrames] = []
        for target in targets:
            items = [(topic, payload) for topic, payload in encoded if topic in target.topics]
            if items:
                pending.append(PendingFrames(target.connection_id, self._frames(target.message_format, items, stamp)))
        return pending

    def for_connection(
        self,
        connection_id: str,
        message_format: StreamFormat,
        updates: Sequence[StreamUpdate],
        *,
        timestamp: float,
        empty_batch: bool = False,
    ) -> PendingFrames:
        """One connection's messages for these updates (a snapshot). ``empty_batch``: in the batch format,
        answer with one empty frame when there is nothing to carry (a resync always gets an answer)."""
        items = [(update.topic, update.encoded()) for update in updates]
        stamp = iso_utc(timestamp)
        if not items and empty_batch and message_format is StreamFormat.BATCH:
            return PendingFrames(connection_id, (Frame(True, (), (), stamp),))
        return PendingFrames(connection_id, self._frames(message_format, items, stamp))

    def _frames(self, message_format: StreamFormat, items: list[tuple[str, bytes]], stamp: str) -> tuple[Frame, ...]:
        if message_format is StreamFormat.SPEC:
            return tuple(Frame(False, (payload,), (topic,), stamp) for topic, payload in items)
        overhead = len(Frame(True, (), (), stamp).render(0)) - 1 + _SEQ_RESERVE
        frames: list[Frame] = []
        parts: list[bytes] = []
        topics: list[str] = []
        size = overhead
        for topic, payload in items:
            added = len(payload) + (1 if parts else 0)  # the comma between updates
            if parts and size + added > self._max_frame_bytes:
                frames.append(Frame(True, tuple(parts), tuple(topics), stamp))
                parts, topics, size = [], [], overhead
                added = len(payload)
            if overhead + len(payload) > self._max_frame_bytes:
                # One item bigger than a frame still goes (alone); API Gateway takes up to 128 KB.
                logger.warning("update larger than a frame", extra={"topic": topic, "bytes": len(payload)})
            parts.append(payload)
            topics.append(topic)
            size += added
        if parts:
            frames.append(Frame(True, tuple(parts), tuple(topics), stamp))
        return tuple(frames)


def sequence(
    state: StreamState,
    pending: Sequence[PendingFrames],
    *,
    lane: str | None,
    round_id: int,
    ttl_seconds: int,
) -> tuple[list[Outgoing], list[str]]:
    """Number each connection's messages (one atomic claim per connection, one round trip for all) and
    render them. Returns what to send and the connections whose claim was dropped (they already got a
    newer round of ``lane``)."""
    claims = [SequenceClaim(p.connection_id, len(p.frames), lane, round_id) for p in pending if p.frames]
    firsts = state.claim_sequences(claims, ttl_seconds=ttl_seconds)
    outgoing: list[Outgoing] = []
    dropped: list[str] = []
    for item, first in zip((p for p in pending if p.frames), firsts, strict=True):
        if first == SEQ_DROP:
            dropped.append(item.connection_id)
            continue
        # first == SEQ_UNSEQUENCED (0): every message carries seq 0 ("not sequenced").
        payloads = tuple(frame.render(first + i if first > 0 else 0) for i, frame in enumerate(item.frames))
        outgoing.append(Outgoing(item.connection_id, payloads, tuple(f.topics for f in item.frames), first))
    return outgoing, dropped


def send_in_order(broadcaster: Broadcaster, outgoing: Sequence[Outgoing]) -> dict[str, list[DeliveryStatus]]:
    """Post every connection's messages in order: wave k holds each connection's k-th message, all
    connections of a wave in parallel (the broadcaster's bounded pool). A connection found gone gets
    nothing more. Returns each connection's statuses, one per message attempted."""
    statuses: dict[str, list[DeliveryStatus]] = {item.connection_id: [] for item in outgoing}
    waves = max((len(item.payloads) for item in outgoing), default=0)
    for k in range(waves):
        wave = [
            item
            for item in outgoing
            if k < len(item.payloads) and DeliveryStatus.GONE not in statuses[item.connection_id]
        ]
        results = broadcaster.send_many([(item.connection_id, item.payloads[k]) for item in wave])
        for item, status in zip(wave, results, strict=True):
            statuses[item.connection_id].append(status)
    return statuses


def topics_delivered(outgoing: Sequence[Outgoing], statuses: Mapping[str, list[DeliveryStatus]]) -> set[str]:
    """Topics carried by at least one message that was sent."""
    delivered: set[str] = set()
    for item in outgoing:
        for topics, status in zip(item.topics, statuses.get(item.connection_id, []), strict=False):
            if status is DeliveryStatus.SENT:
                delivered.update(topics)
    return delivered


@dataclass
class RoundResult:
    outgoing: list[Outgoing] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # connections that already had a newer round of the lane
    statuses: dict[str, list[DeliveryStatus]] = field(default_factory=dict)  # per connection, per message
    skipped_topics: set[str] = field(default_factory=set)  # topics the dropped connections did not get

    def count(self, status: DeliveryStatus) -> int:
        return sum(results.count(status) for results in self.statuses.values())

    @property
    def gone_connections(self) -> list[str]:
        return [cid for cid, results in self.statuses.items() if DeliveryStatus.GONE in results]

    @property
    def undelivered_topics(self) -> set[str]:
        """Topics nobody received, or that a connection skipped as an older round: the next refresh must
        send them again (forget their fingerprints)."""
        attempted = {topic for item in self.outgoing for topics in item.topics for topic in topics}
        return (attempted - topics_delivered(self.outgoing, self.statuses)) | self.skipped_topics


def deliver_round(
    state: StreamState,
    broadcaster: Broadcaster,
    builder: FrameBuilder,
    targets: Sequence[FrameTarget],
    items: Sequence[tuple[str, bytes]],
    *,
    lane: str,
    round_id: int,
    ttl_seconds: int,
    timestamp: float,
) -> RoundResult:
    """Build, number and post one round's frames (its encoded items, see ``encode_items``) to these
    connections."""
    pending = builder.for_items(targets, items, timestamp=timestamp)
    outgoing, dropped = sequence(state, pending, lane=lane, round_id=round_id, ttl_seconds=ttl_seconds)
    dropped_ids = set(dropped)
    skipped = {t for p in pending if p.connection_id in dropped_ids for f in p.frames for t in f.topics}
    return RoundResult(outgoing, dropped, send_in_order(broadcaster, outgoing), skipped)
