"""Fan-out: a publish round from the refresh jobs to every subscriber, shard by shard.

- ``publish`` starts a round with the updates whose value changed since the last publish (a fingerprint
  in Redis, compare-and-set) and that someone subscribes to (the topic registry's copy in Redis, kept
  current by every subscribe and read again from DynamoDB, one Query per shard, every few minutes; see
  ``topic_registry`` and services/store_copies.py):
  the round is stored once and one worker per shard holding a subscriber is dispatched (Lambda async
  invoke). ``deliver_shard`` (the worker) reads its shard's connections with their topic sets from the
  shard's copy in Redis (the same mechanism: read from DynamoDB, a few paged Queries, when missing or
  older than SHARD_COPY_MAX_AGE_SECONDS; kept by every subscribe, unsubscribe and removal) and gives
  each subscriber the round in its format (chalicelib/services/frames.py: one message per item, or one
  ``batch`` frame), numbered with its ``seq``, connections in parallel on a bounded pool; a 410 Gone
  deletes that connection, its subscriptions and its registry counts.
- Rounds are ordered per *lane* (the publisher: ``quote`` for quotes, the channel topics for the others),
  by a round id (epoch milliseconds, strictly increasing per process). A connection that already got a
  newer round of the lane does not get an older one; the older round's topics are forgotten, so the next
  refresh sends them again rather than never.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from chalicelib import observability
from chalicelib.errors import StoreUnavailable
from chalicelib.models.market import Quote
from chalicelib.models.served import Served
from chalicelib.models.streaming import QUOTE_TOPIC_PREFIX, StreamUpdate, quote_update
from chalicelib.ports import (
    Broadcaster,
    ConnectionRecord,
    ConnectionStore,
    DeliveryStatus,
    ShardDispatcher,
    ShardTask,
    StoredRound,
    StreamState,
    TopicRegistry,
    shard_for,
)
from chalicelib.services import frames, store_copies
from chalicelib.services.frames import FrameBuilder, FrameTarget

logger = observability.logger

# A round's stored items outlive any worker that could still deliver it (Lambda's maximum event age for
# the worker is 60 s; see infra/deploy.py).
ROUND_TTL_SECONDS = 300
# The registry's copy is read again from DynamoDB (after a refresh has dispatched its round) once it is
# this old and something was removed since it was read (removed pairs linger in it until then)...
REGISTRY_COPY_MAX_AGE_SECONDS = 300
# ... and, whatever happened, once it is this old: it bounds how long a pair added while Redis was
# unreachable (the subscribe could not record it in the copy) goes unseen.
REGISTRY_COPY_MAX_AGE_UNCHANGED_SECONDS = 1800
# A shard's copy records removals exactly (unlike the registry's counts), so only this bounds how long a
# change recorded nowhere (Redis unreachable at that moment) goes unseen; re-read after the round.
SHARD_COPY_MAX_AGE_SECONDS = 1800


def lane_of(updates: Sequence[StreamUpdate]) -> str:
    """The publisher a round belongs to, from its topics: ``quote``, or the channel topics it carries."""
    families = {"quote" if u.topic.startswith(QUOTE_TOPIC_PREFIX) else u.topic for u in updates}
    return "+".join(sorted(families))


@dataclass
class PublishReport:
    topics: int = 0
    unchanged: int = 0
    without_subscribers: int = 0
    sent: int = 0  # messages posted (frames in the batch format, updates in the spec format)
    gone: int = 0
    failed: int = 0
    connections: int = 0  # connections the round went to
    dropped: int = 0  # connections that had already got a newer round of this lane
    gone_connections: list[str] = field(default_factory=list)
    lookup_seconds: float = 0.0  # finding subscribers and claiming changes
    send_seconds: float = 0.0  # posting to them (or dispatching the shard workers)
    shards: int = 0  # shards the round went to (dispatched workers, or delivered here)
    dispatch_failed: int = 0  # shard invocations Lambda refused (delivered here instead)
    expired: int = 0  # connections closed because their token expired
    # The registry's copy the round was judged by (read from the store into a new copy when there was
    # none): what ``renew_registry_copy`` decides by after the round, without reading it again. None in
    # a shard's delivery report.
    registry: store_copies.Copied[TopicRegistry] | None = None

    def add(self, other: PublishReport) -> None:
        """Fold one shard's delivery into the round's report."""
        self.sent += other.sent
        self.gone += other.gone
        self.failed += other.failed
        self.connections += other.connections
        self.dropped += other.dropped
        self.expired += other.expired
        self.gone_connections.extend(other.gone_connections)


class FanOut:
    """Rounds to subscribers; StreamingService is this plus the connections' side."""

    def __init__(
        self,
        *,
        store: ConnectionStore,
        state: StreamState,
        frames: FrameBuilder,
        connection_ttl_seconds: int,
        clock: Callable[[], float],
        lookup_concurrency: int,
        dispatcher: ShardDispatcher | None,
        shard_count: int,
    ) -> None:
        self._store = store
        self._shard_count = shard_count
        self._state = state
        self._frames = frames
        self._connection_ttl_seconds = connection_ttl_seconds
        self._clock = clock
        self._lookup_concurrency = lookup_concurrency
        self._dispatcher = dispatcher
        self._last_round = 0

    def _close(self, connection_id: str, broadcaster: Broadcaster, *, reason: str, remove: bool) -> None:
        """Close a connection through the management API (an expired token, an exhausted budget)."""
        status = broadcaster.close(connection_id)
        observability.count("ConnectionClosedByServer", dimensions={"reason": reason})
        logger.info("connection closed by the service", extra={"reason": reason, "status": status.value})
        if remove or status is DeliveryStatus.GONE:
            self.removed(connection_id)

    def _next_round(self, now: float) -> int:
        # Epoch milliseconds, strictly increasing within this process (two rounds in one millisecond).
        self._last_round = max(int(now * 1000), self._last_round + 1)
        return self._last_round

    def publish(
        self,
        updates: Sequence[StreamUpdate],
        broadcaster: Broadcaster,
        *,
        round_id: int | None = None,
        lane: str | None = None,
    ) -> PublishReport:
        """Start one round: the updates whose topic has a subscriber (the registry: one Query per shard)
        and whose value changed are stored once, and one worker per shard holding a subscriber of any of
        them is dispatched (``deliver_shard``). Without a dispatcher (FANOUT_DISPATCH=inline), or when the
        round cannot be stored (Redis down), this process delivers every such shard itself on its pool.
        ``round_id`` / ``lane`` default to now (ms) and the updates' publisher (``lane_of``)."""
        started = time.monotonic()
        report = PublishReport()
        now = self._clock()
        round_id = round_id if round_id is not None else self._next_round(now)
        lane = lane or lane_of(updates)
        report.registry = self._registry_copy().current_copy()
        registry = report.registry.value
        subscribed = set(registry.topics())
        report.topics = len(updates)
        # Nobody to tell: not claimed, so a later subscriber's first refresh sends it.
        wanted = [update for update in updates if update.topic in subscribed]
        report.without_subscribers = len(updates) - len(wanted)
        claimed = self._state.claim_changes([(update.topic, update.fingerprint) for update in wanted])
        changed = [update for update, is_new in zip(wanted, claimed, strict=True) if is_new]
        report.unchanged = len(wanted) - len(changed)
        shards = registry.shards_for(update.topic for update in changed)
        report.lookup_seconds = time.monotonic() - started
        if not shards:
            return report
        stored = StoredRound(lane, round_id, now, tuple(frames.encode_items(changed)))
        key = f"{lane}@{round_id}"
        sending = time.monotonic()
        if self._dispatcher is not None and self._state.put_round(key, stored, ttl_seconds=ROUND_TTL_SECONDS):
            dispatched = self._dispatcher.dispatch([ShardTask(key, shard) for shard in shards])
            report.shards = dispatched.dispatched
            report.dispatch_failed = len(dispatched.failed)
            for shard in dispatched.failed:
                # Lambda refused the invocation: this process delivers that shard rather than lose it.
                report.add(self._deliver(stored, shard, broadcaster))
        else:
            workers = min(len(shards), max(1, self._lookup_concurrency))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="shard") as pool:
                for shard_report in pool.map(lambda shard: self._deliver(stored, shard, broadcaster), shards):
                    report.add(shard_report)
            report.shards = len(shards)
        report.send_seconds = time.monotonic() - sending
        observability.count("FanoutShards", value=report.shards)
        observability.count("FanoutDispatchFailed", value=report.dispatch_failed)
        observability.milliseconds("PublishDuration", (time.monotonic() - started) * 1000)
        return report

    def _registry_copy(self) -> store_copies.StoreCopy[TopicRegistry]:
        return store_copies.StoreCopy(
            self._state,
            store_copies.REGISTRY_COPY,
            read_store=self._store.topic_registry,
            encode=store_copies.encode_registry,
            decode=store_copies.decode_registry,
            clock=self._clock,
        )

    def _shard_copy(self, shard: int) -> store_copies.StoreCopy[list[ConnectionRecord]]:
        return store_copies.StoreCopy(
            self._state,
            store_copies.shard_copy(shard),
            read_store=lambda: list(self._store.connections_in_shard(shard, now=self._clock())),
            encode=store_copies.encode_shard,
            decode=store_copies.shard_decoder(shard),
            clock=self._clock,
        )

    def topic_registry(self) -> TopicRegistry:
        """Which topics have subscribers in which shards: the registry's copy in Redis (one round trip),
        or, without one, the registry itself (SHARD_COUNT Queries), copied for the next reader."""
        return self._registry_copy().current()

    def read_registry(self) -> TopicRegistry:
        """Read the registry from the store into a new copy."""
        return self._registry_copy().read()

    def renew_registry_copy(self, *, seen: store_copies.Copied[TopicRegistry] | None = None) -> bool:
        """Read the registry again when its copy is older than REGISTRY_COPY_MAX_AGE_SECONDS and something
        was removed since, or older than REGISTRY_COPY_MAX_AGE_UNCHANGED_SECONDS (a refresh calls this
        after dispatching its round, off the round's path, with the copy the round read: ``seen``,
        PublishReport.registry). True when it did."""
        return self._registry_copy().renew(
            max_age_seconds=REGISTRY_COPY_MAX_AGE_UNCHANGED_SECONDS,
            max_age_with_removals_seconds=REGISTRY_COPY_MAX_AGE_SECONDS,
            seen=seen,
        )

    def read_shards(self, shards: Iterable[int] | None = None) -> None:
        """Read shards' connections from the store into new copies (every shard by default): after writes
        made past this service (the daily cleanup's removals and repairs)."""
        for shard in range(self._shard_count) if shards is None else shards:
            self._shard_copy(shard).read()

    def removed(self, connection_id: str, *, shard: int | None = None) -> int:
        """Remove a connection (and its subscriptions and registry counts), then record the removal in the
        registry's copy and its shard's copy (``shard``: where it is known, else from its id)."""
        where = shard if shard is not None else shard_for(connection_id, self._shard_count)
        return self._remove_in_shard([connection_id], where)[0]

    def _remove_in_shard(self, connection_ids: Sequence[str], shard: int) -> list[int]:
        """Remove connections of one shard (one store call each: the store has no batch removal), then
        record them all in the registry's copy and the shard's copy in one call, the ones removed before
        a store call failed included."""
        removed: list[int] = []
        try:
            for connection_id in connection_ids:
                removed.append(self._store.remove_connection(connection_id))
        finally:
            if removed:
                done = connection_ids[: len(removed)]
                self._state.record_copy_changes(
                    [store_copies.registry_removal(len(done)), store_copies.shard_removed(done, shard)]
                )
        return removed

    def deliver_shard(self, round_key: str, shard: int, broadcaster: Broadcaster) -> PublishReport:
        """A shard worker's invocation: the stored round to every live connection of the shard (paged
        reads of the shard's connections with their formats and topic sets). Delivered twice (Lambda's
        at-least-once async invoke, a retry), a connection gets the round once: its sequence step drops
        a round it already had."""
        stored = self._state.get_round(round_key)
        if stored is None:
            logger.warning("fan-out round not found (expired or never stored)", extra={"round": round_key})
            observability.count("FanoutRoundMissing")
            return PublishReport()
        return self._deliver(stored, shard, broadcaster)

    def _deliver(self, stored: StoredRound, shard: int, broadcaster: Broadcaster) -> PublishReport:
        started = time.monotonic()
        report = PublishReport()
        topics = {topic for topic, _ in stored.items}
        now = self._clock()
        copy = self._shard_copy(shard)
        cached = copy.cached()
        # The copy may hold connections whose record expired (DynamoDB's TTL deletes late; reads filter).
        records = [r for r in (cached.value if cached is not None else copy.read()) if r.expires_at > now]
        # A connection whose token expired gets nothing more: it is closed (and removed) here.
        expired = [r for r in records if r.token_expires_at is not None and r.token_expires_at <= now]
        for record in expired:
            self._close(record.connection_id, broadcaster, reason="token_expired", remove=True)
        report.expired = len(expired)
        live = [r for r in records if r.token_expires_at is None or r.token_expires_at > now]
        targets = [FrameTarget(r.connection_id, frames.format_of(r), r.topics) for r in live if topics & r.topics]
        report.lookup_seconds = time.monotonic() - started
        sending = time.monotonic()
        result = frames.deliver_round(
            self._state,
            broadcaster,
            self._frames,
            targets,
            stored.items,
            lane=stored.lane,
            round_id=stored.round_id,
            ttl_seconds=self._connection_ttl_seconds,
            timestamp=stored.timestamp,
        )
        report.send_seconds = time.monotonic() - sending
        report.connections = len(result.outgoing)
        report.dropped = len(result.dropped)
        report.sent = result.count(DeliveryStatus.SENT)
        report.gone = result.count(DeliveryStatus.GONE)
        report.failed = result.count(DeliveryStatus.FAILED)
        report.gone_connections = result.gone_connections
        for topic in result.undelivered_topics:
            self._state.forget(topic)
        self._remove_in_shard(list(dict.fromkeys(report.gone_connections)), shard)
        if cached is not None and now - cached.built_at >= SHARD_COPY_MAX_AGE_SECONDS:
            # After the posts: the round does not wait for the Queries, nor fails with them (the old copy
            # stays in use; the next round tries again).
            try:
                copy.read()
            except StoreUnavailable as exc:
                logger.warning("shard copy not renewed", extra={"shard": shard, "detail": exc.message})
        self._state.add_counts({"sent": report.sent, "gone": report.gone, "failed": report.failed})
        observability.count("FanoutSent", value=report.sent)
        observability.count("ConnectionGone", value=report.gone)
        observability.count("FanoutFailed", value=report.failed)
        observability.count("FanoutRoundDropped", value=report.dropped)
        observability.milliseconds("ShardDeliveryDuration", (time.monotonic() - started) * 1000)
        logger.info(
            "shard delivered",
            extra={
                "shard": shard,
                "connections": report.connections,
                "sent": report.sent,
                "gone": report.gone,
                "failed": report.failed,
                "lookup_seconds": round(report.lookup_seconds, 4),
                "send_seconds": round(report.send_seconds, 4),
            },
        )
        return report

    def publish_quotes(self, quotes: Sequence[Served[Quote]], broadcaster: Broadcaster) -> PublishReport:
        return self.publish([quote_update(q) for q in quotes], broadcaster)
