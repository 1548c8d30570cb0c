"""A connection's requests: subscribe, unsubscribe, resync and ping, answered with acks, snapshots and
errors (the streaming service has already charged the message to the budgets).

Subscribe: validation → caps (per connection; distinct symbols per user over all its connections) →
existence (a quote from the cache or a provider, or the bundled S&P 500 list when no provider answers)
→ store. A symbol not known to exist is never stored.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from chalicelib import observability
from chalicelib.errors import AppError
from chalicelib.models.market import MoverType
from chalicelib.models.streaming import (
    QUOTE_TOPIC_PREFIX,
    AckData,
    AckMessage,
    Action,
    Channel,
    ClientRequest,
    PongData,
    PongMessage,
    ProtocolError,
    StreamUpdate,
    SubscriptionSet,
    encode,
    error_message,
    indices_update,
    movers_update,
    quote_topic,
    quote_update,
    request_for_topics,
    sectors_update,
    sentiment_update,
)
from chalicelib.ports import ConnectionRecord, ConnectionStore, StreamState
from chalicelib.services import frames, store_copies
from chalicelib.services.frames import FrameBuilder
from chalicelib.services.market_data import MarketDataService
from chalicelib.services.stream_limits import StreamingLimits
from chalicelib.services.symbol_directory import is_listed

logger = observability.logger

MOVERS_SNAPSHOT_LIMIT = 10


def unknown_connection() -> ProtocolError:
    return ProtocolError("unknown_connection", "this connection is not registered (expired); reconnect")


def _ack(kind: Literal["subscribed", "unsubscribed"], topics: list[str]) -> bytes:
    return encode(AckMessage(type=kind, data=AckData(subscriptions=SubscriptionSet.from_topics(topics))))


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscriptions:
    store: ConnectionStore
    state: StreamState
    market: MarketDataService
    limits: StreamingLimits
    frames: FrameBuilder
    clock: Callable[[], float]

    def replies(self, connection_id: str, request: ClientRequest) -> list[bytes]:
        now = self.clock()
        if request.action is Action.PING:
            return [encode(PongMessage(data=PongData(timestamp=datetime.fromtimestamp(now, UTC))))]
        connection = self.store.get_connection(connection_id, now=now)
        if connection is None:
            raise unknown_connection()
        if request.action is Action.UNSUBSCRIBE:
            remaining = self.store.remove_subscriptions(connection_id, request.topics)
            if remaining is None:
                raise unknown_connection()
            held = connection.topics.intersection(request.topics)
            if held:  # only a held topic leaves the registry (and the shard's copy)
                self.state.record_copy_changes(
                    [store_copies.registry_removal(), store_copies.shard_unsubscribed(connection, held)]
                )
            return [_ack("unsubscribed", remaining)]
        if request.action is Action.RESYNC:
            interval = self.limits.resync_interval_seconds
            if not self.state.allow_resync(connection_id, interval_seconds=interval):
                raise ProtocolError(
                    "resync_rate_limited",
                    f"at most one resync per {interval} s per connection; try again shortly "
                    "(or re-read GET /api/v1/market/quotes)",
                )
            return self._numbered(connection, self._resync_snapshots(connection), now, empty_batch=True)
        cap = self.limits.max_subscriptions_per_connection
        requested = [t for t in request.topics if t not in connection.topics]
        if len(connection.topics) + len(requested) > cap:
            raise ProtocolError(
                "too_many_symbols",
                f"this connection would hold {len(connection.topics) + len(requested)} subscriptions; "
                f"at most {cap}. Unsubscribe from some first.",
            )
        if any(t.startswith(QUOTE_TOPIC_PREFIX) for t in requested):
            self._check_user_symbols(connection, requested, now)
        items = self.market.get_quotes(list(request.symbols)) if request.symbols else []
        # Stored only once known to exist: quoted (cache or provider), or, when no provider can answer
        # right now, listed in the bundled S&P 500 list (its updates follow once a provider answers).
        # Anything else is never stored: nothing would arrive for it, and every refresh would pay for it.
        known = {quote_topic(i.symbol) for i in items if i.quote is not None or is_listed(i.symbol)}
        new_topics = [t for t in requested if not t.startswith(QUOTE_TOPIC_PREFIX) or t in known]
        current = self.store.add_subscriptions(connection_id, new_topics, expires_at=connection.expires_at)
        if current is None:
            raise unknown_connection()
        # After the store's writes: the registry's copy every refresh reads gains these pairs, and the
        # shard's copy its worker reads gains these topics (services/store_copies.py).
        if new_topics:
            self.state.record_copy_changes(
                [
                    store_copies.registry_added(connection.shard, new_topics),
                    store_copies.shard_subscribed(connection, new_topics),
                ]
            )
        snapshots = [quote_update(item.quote, snapshot=True) for item in items if item.quote]
        snapshots.extend(self._channel_snapshots(request.channels))
        errors = [
            error_message(
                item.error.code,
                f"cannot stream {item.symbol}: {item.error.message}"
                + ("" if quote_topic(item.symbol) in known else "; not subscribed"),
            )
            for item in items
            if item.error is not None
        ]
        return [_ack("subscribed", current), *self._numbered(connection, snapshots, now), *errors]

    def _check_user_symbols(self, connection: ConnectionRecord, requested: list[str], now: float) -> None:
        """The user's distinct symbols over all its connections (one Query on the by-user index) stay
        within the cap. Two subscribes of one user on two connections at the same instant can each pass
        against the same count (a soft cap under that race, by at most one message's symbols)."""
        cap = self.limits.max_symbols_per_user
        held = {
            topic
            for record in [connection, *self.store.connections_of_user(connection.user_id, now=now)]
            for topic in record.topics
            if topic.startswith(QUOTE_TOPIC_PREFIX)
        }
        adding = {t for t in requested if t.startswith(QUOTE_TOPIC_PREFIX)} - held
        if len(held) + len(adding) > cap:
            raise ProtocolError(
                "too_many_user_symbols",
                f"your connections would stream {len(held) + len(adding)} distinct symbols; at most {cap} "
                f"per user (WS_MAX_SYMBOLS_PER_USER). Unsubscribe from some first.",
            )

    def _resync_snapshots(self, connection: ConnectionRecord) -> list[StreamUpdate]:
        """Every current subscription's value (a symbol that cannot be quoted right now is left out: its
        next update arrives when a provider answers)."""
        wanted = request_for_topics(Action.RESYNC, connection.topics)
        snapshots: list[StreamUpdate] = []
        if wanted.symbols:
            batch = self.market.get_quotes(list(wanted.symbols))
            snapshots.extend(quote_update(item.quote, snapshot=True) for item in batch if item.quote)
        snapshots.extend(self._channel_snapshots(wanted.channels))
        return snapshots

    def _numbered(
        self, connection: ConnectionRecord, updates: list[StreamUpdate], now: float, *, empty_batch: bool = False
    ) -> list[bytes]:
        """Snapshot updates as this connection's data messages (its format), each with its ``seq``."""
        pending = self.frames.for_connection(
            connection.connection_id, frames.format_of(connection), updates, timestamp=now, empty_batch=empty_batch
        )
        outgoing, _ = frames.sequence(
            self.state, [pending], lane=None, round_id=0, ttl_seconds=self.limits.connection_ttl_seconds
        )
        return [payload for item in outgoing for payload in item.payloads]

    def _channel_snapshots(self, channels: Sequence[Channel]) -> list[StreamUpdate]:
        """The current value of each requested channel, from the cache (read-through: a miss is fetched
        once and cached), so a new subscriber's screen is filled before the next refresh tick."""
        updates: list[StreamUpdate] = []
        for channel in channels:
            try:
                updates.append(self._channel_snapshot(channel))
            except AppError as exc:
                logger.info("no snapshot for channel", extra={"channel": channel.value, "detail": exc.message})
        return updates

    def _channel_snapshot(self, channel: Channel) -> StreamUpdate:
        if channel is Channel.INDICES:
            return indices_update(self.market.get_indices(), snapshot=True)
        if channel is Channel.SECTORS:
            return sectors_update(self.market.get_sectors(), snapshot=True)
        if channel is Channel.SENTIMENT:
            return sentiment_update(self.market.get_sentiment(), snapshot=True)
        return movers_update(
            *(self.market.get_movers(kind, MOVERS_SNAPSHOT_LIMIT) for kind in MoverType), snapshot=True
        )
