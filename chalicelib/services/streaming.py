"""Real-time streaming: connections, subscriptions, snapshots and fan-out.

The three WebSocket handlers call ``connect`` / ``handle_message`` / ``disconnect``; the scheduled
refresh jobs call ``publish``. Policy lives here (caps, TTLs, what a client is told, when a message is
worth sending); storage and delivery sit behind the ConnectionStore, StreamState and Broadcaster ports.

- A connection lives at most API Gateway's 2 hours; its record (and its subscriptions) carry that
  plus a margin as DynamoDB TTL, and every read filters on it.
- Bad client input is answered with an ``error`` message; it never raises out of the handler, so the
  connection stays open.
- ``publish`` sends a topic's update only when its value changed since the last publish (a fingerprint
  in Redis, compare-and-set), to every subscriber at once on a bounded pool; a 410 Gone deletes that
  connection and all its subscriptions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from chalicelib import observability
from chalicelib.errors import AppError
from chalicelib.models.market import MoverType, QuoteResponse
from chalicelib.models.streaming import (
    AckData,
    AckMessage,
    Action,
    Channel,
    ClientRequest,
    MessageCounts,
    PongData,
    PongMessage,
    ProtocolError,
    StreamUpdate,
    SubscriptionSet,
    TopicCount,
    WsStatsResponse,
    encode,
    error_message,
    indices_update,
    movers_update,
    parse_client_message,
    quote_update,
    sectors_update,
    sentiment_update,
)
from chalicelib.ports import Broadcaster, ConnectionRecord, ConnectionStore, DeliveryStatus, StreamState, shard_for
from chalicelib.services.market_data import MarketDataService

logger = observability.logger

# API Gateway closes every WebSocket connection after 2 hours.
API_GATEWAY_MAX_CONNECTION_SECONDS = 2 * 3600
MOVERS_SNAPSHOT_LIMIT = 10


def _unknown_connection() -> ProtocolError:
    return ProtocolError("unknown_connection", "this connection is not registered (expired); reconnect")


def _ack(kind: Literal["subscribed", "unsubscribed"], topics: list[str]) -> bytes:
    return encode(AckMessage(type=kind, data=AckData(subscriptions=SubscriptionSet.from_topics(topics))))


class TooManyConnections(AppError):
    status_code = 429
    code = "too_many_connections"


@dataclass(frozen=True)
class StreamingLimits:
    max_connections_per_user: int = 5
    max_subscriptions_per_connection: int = 50
    max_message_bytes: int = 16 * 1024
    ttl_margin_seconds: int = 600
    shard_count: int = 16  # WS_SHARD_COUNT: a connection's shard is shard_for(its id, shard_count)

    @property
    def connection_ttl_seconds(self) -> int:
        return API_GATEWAY_MAX_CONNECTION_SECONDS + self.ttl_margin_seconds


@dataclass
class PublishReport:
    topics: int = 0
    unchanged: int = 0
    without_subscribers: int = 0
    sent: int = 0
    gone: int = 0
    failed: int = 0
    gone_connections: list[str] = field(default_factory=list)
    lookup_seconds: float = 0.0  # finding subscribers and claiming changes
    send_seconds: float = 0.0  # posting to them


class StreamingService:
    def __init__(
        self,
        *,
        store: ConnectionStore,
        state: StreamState,
        market: MarketDataService,
        limits: StreamingLimits,
        clock: Callable[[], float] = time.time,
        lookup_concurrency: int = 16,
    ) -> None:
        self._store = store
        self._state = state
        self._market = market
        self._limits = limits
        self._clock = clock
        self._lookup_concurrency = lookup_concurrency

    # --- $connect / $disconnect -------------------------------------------------------------------

    def connect(
        self, connection_id: str, user_id: str, *, source_ip: str | None = None, user_agent: str | None = None
    ) -> ConnectionRecord:
        """Store a new connection in its shard; TooManyConnections when the user already holds the
        maximum (the store enforces it with a conditional write, so simultaneous connects cannot pass it)."""
        now = self._clock()
        record = ConnectionRecord(
            connection_id=connection_id,
            user_id=user_id,
            connected_at=datetime.fromtimestamp(now, UTC),
            expires_at=int(now) + self._limits.connection_ttl_seconds,
            source_ip=source_ip,
            user_agent=user_agent[:256] if user_agent else None,
            shard=shard_for(connection_id, self._limits.shard_count),
        )
        cap = self._limits.max_connections_per_user
        if not self._store.add_connection(record, max_per_user=cap):
            observability.count("ConnectionRefused", dimensions={"reason": "per_user_cap"})
            raise TooManyConnections(f"this user already holds {cap} open connections (the maximum); close one first")
        observability.count("ConnectionOpened")
        return record

    def disconnect(self, connection_id: str) -> int:
        removed = self._store.remove_connection(connection_id)
        observability.count("ConnectionClosed")
        return removed

    # --- $default ---------------------------------------------------------------------------------

    def handle_message(self, connection_id: str, raw: str | None, broadcaster: Broadcaster) -> None:
        """Act on one client message and answer it (ack + snapshots, pong, or error) through
        ``broadcaster``. Never raises for bad input: the client gets an ``error`` message instead."""
        try:
            request = parse_client_message(
                raw,
                max_bytes=self._limits.max_message_bytes,
                max_items=self._limits.max_subscriptions_per_connection,
            )
            replies = self._replies(connection_id, request)
        except ProtocolError as exc:
            observability.count("ClientMessageRejected", dimensions={"code": exc.code})
            replies = [error_message(exc.code, exc.message)]
        except AppError as exc:  # storage down and the like: tell the client, keep the connection
            logger.warning("message not handled", extra={"code": exc.code, "detail": exc.message})
            replies = [error_message(exc.code, "the request could not be completed; try again shortly")]
        for reply in replies:
            status = broadcaster.send(connection_id, reply)
            if status is DeliveryStatus.GONE:
                self._store.remove_connection(connection_id)
                return

    def _replies(self, connection_id: str, request: ClientRequest) -> list[bytes]:
        now = self._clock()
        if request.action is Action.PING:
            return [encode(PongMessage(data=PongData(timestamp=datetime.fromtimestamp(now, UTC))))]
        connection = self._store.get_connection(connection_id, now=now)
        if connection is None:
            raise _unknown_connection()
        if request.action is Action.UNSUBSCRIBE:
            remaining = self._store.remove_subscriptions(connection_id, request.topics)
            if remaining is None:
                raise _unknown_connection()
            return [_ack("unsubscribed", remaining)]
        new_topics = [t for t in request.topics if t not in connection.topics]
        cap = self._limits.max_subscriptions_per_connection
        if len(connection.topics) + len(new_topics) > cap:
            raise ProtocolError(
                "too_many_symbols",
                f"this connection would hold {len(connection.topics) + len(new_topics)} subscriptions; "
                f"at most {cap}. Unsubscribe from some first.",
            )
        current = self._store.add_subscriptions(connection_id, new_topics, expires_at=connection.expires_at)
        if current is None:
            raise _unknown_connection()
        return [_ack("subscribed", current), *(update.encoded() for update in self._snapshots(request))]

    def _snapshots(self, request: ClientRequest) -> list[StreamUpdate]:
        """The current value of each requested item, from the cache (read-through: a miss is fetched once
        and cached), so a new subscriber's screen is filled before the next refresh tick."""
        updates: list[StreamUpdate] = []
        if request.symbols:
            batch = self._market.get_quotes(list(request.symbols))
            updates.extend(quote_update(item.quote, snapshot=True) for item in batch.quotes if item.quote is not None)
        for channel in request.channels:
            try:
                updates.append(self._channel_snapshot(channel))
            except AppError as exc:
                logger.info("no snapshot for channel", extra={"channel": channel.value, "detail": exc.message})
        return updates

    def _channel_snapshot(self, channel: Channel) -> StreamUpdate:
        if channel is Channel.INDICES:
            return indices_update(self._market.get_indices(), snapshot=True)
        if channel is Channel.SECTORS:
            return sectors_update(self._market.get_sectors(), snapshot=True)
        if channel is Channel.SENTIMENT:
            return sentiment_update(self._market.get_sentiment(), snapshot=True)
        return movers_update(
            *(self._market.get_movers(kind, MOVERS_SNAPSHOT_LIMIT) for kind in MoverType), snapshot=True
        )

    # --- fan-out ----------------------------------------------------------------------------------

    def publish(self, updates: Sequence[StreamUpdate], broadcaster: Broadcaster) -> PublishReport:
        """Send each changed update to its topic's subscribers; report what happened."""
        started = time.monotonic()
        report = PublishReport()
        now = self._clock()
        # Gather every delivery of the round first, then send them all on one bounded pool: a round of
        # 100 topics with 10 subscribers each is 1,000 concurrent posts, not 100 sequential batches.
        deliveries: list[tuple[str, str, bytes]] = []  # topic, connection id, payload
        # Subscriber lookups run concurrently too (one Query per topic; a round of 100 topics is 100
        # Queries): DynamoDB serves them in parallel, and the boto3 client is thread-safe.
        workers = max(1, min(self._lookup_concurrency, len(updates)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lookup") as pool:
            found = list(pool.map(lambda update: self._store.subscribers(update.topic, now=now), updates))
        for update, subscribers in zip(updates, found, strict=True):
            report.topics += 1
            if not subscribers:
                # Nobody to tell. The value is not claimed, so a later subscriber's first refresh sends it.
                report.without_subscribers += 1
                continue
            if not self._state.claim_change(update.topic, update.fingerprint):
                report.unchanged += 1
                continue
            payload = update.encoded()
            deliveries.extend((update.topic, connection_id, payload) for connection_id in subscribers)
        sending = time.monotonic()
        report.lookup_seconds = sending - started
        statuses = broadcaster.send_many([(connection_id, payload) for _, connection_id, payload in deliveries])
        report.send_seconds = time.monotonic() - sending
        delivered_topics: set[str] = set()
        for (topic, connection_id, _), status in zip(deliveries, statuses, strict=True):
            if status is DeliveryStatus.SENT:
                report.sent += 1
                delivered_topics.add(topic)
            elif status is DeliveryStatus.GONE:
                report.gone += 1
                report.gone_connections.append(connection_id)
            else:
                report.failed += 1
        for topic in {topic for topic, _, _ in deliveries} - delivered_topics:
            self._state.forget(topic)  # nobody received it: the next refresh must send it again
        for connection_id in dict.fromkeys(report.gone_connections):
            self._store.remove_connection(connection_id)
        self._state.add_counts({"sent": report.sent, "gone": report.gone, "failed": report.failed})
        observability.count("FanoutSent", value=report.sent)
        observability.count("ConnectionGone", value=report.gone)
        observability.count("FanoutFailed", value=report.failed)
        observability.milliseconds("PublishDuration", (time.monotonic() - started) * 1000)
        return report

    def publish_quotes(self, quotes: Sequence[QuoteResponse], broadcaster: Broadcaster) -> PublishReport:
        return self.publish([quote_update(q) for q in quotes], broadcaster)

    # --- /ws/stats --------------------------------------------------------------------------------

    def stats(self, *, top: int = 10) -> WsStatsResponse:
        now = self._clock()
        stats = self._store.stats(top=top)
        counts = self._state.counts_last_hour()
        return WsStatsResponse(
            open_connections=stats.open_connections,
            distinct_users=stats.distinct_users,
            top_topics=[TopicCount(topic=t, subscribers=n) for t, n in stats.subscribers_by_topic.items()],
            messages_last_hour=(
                MessageCounts(sent=counts.get("sent", 0), gone=counts.get("gone", 0), failed=counts.get("failed", 0))
                if counts is not None
                else None
            ),
            as_of=datetime.fromtimestamp(now, UTC),
        )
