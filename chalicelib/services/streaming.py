"""Real-time streaming: connections, subscriptions, snapshots and fan-out.

The three WebSocket handlers call ``connect`` / ``handle_message`` / ``disconnect``; the scheduled
refresh jobs call ``publish``. Policy lives here (caps, TTLs, what a client is told, when a message is
worth sending); storage and delivery sit behind the ConnectionStore, StreamState and Broadcaster ports.

- A connection lives at most API Gateway's 2 hours; its record (and its subscriptions) carry that
  plus a margin as DynamoDB TTL, and every read filters on it.
- Bad client input is answered with an ``error`` message; it never raises out of the handler, so the
  connection stays open.
- Every client message first pays its cost (``MESSAGE_COSTS``) from the connection's and the user's token
  buckets (MessageBudget, one Redis step), before any DynamoDB write or provider call: over budget is a
  ``rate_limited`` error with ``retry_after``, and a connection refused ``close_after_rejections`` times
  within the window is closed through the management API. A connection whose token expired is told so
  and closed, on its next message or by the fan-out worker, whichever comes first.
- Subscribe: budget → validation → caps (per connection; distinct symbols per user over all its
  connections) → existence (a quote from the cache or a provider, or the bundled S&P 500 list when no
  provider answers) → store. A symbol not known to exist is never stored.
- ``publish`` starts a round with the updates whose value changed since the last publish (a fingerprint
  in Redis, compare-and-set) and that someone subscribes to (the topic registry's copy in Redis, kept
  current by every subscribe and read again from DynamoDB, one Query per shard, every few minutes; see
  ``topic_registry``):
  the round is stored once and one worker per shard holding a subscriber is dispatched (Lambda async
  invoke). ``deliver_shard`` (the worker) reads its shard's connections in a few paged Queries and gives
  each subscriber the round in its format (chalicelib/services/frames.py: one message per item, or one
  ``batch`` frame), numbered with its ``seq``, connections in parallel on a bounded pool; a 410 Gone
  deletes that connection, its subscriptions and its registry counts.
- Rounds are ordered per *lane* (the publisher: ``quote`` for quotes, the channel topics for the others),
  by a round id (epoch milliseconds, strictly increasing per process). A connection that already got a
  newer round of the lane does not get an older one; the older round's topics are forgotten, so the next
  refresh sends them again rather than never.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from chalicelib import observability
from chalicelib.errors import AppError, ValidationFailed
from chalicelib.models.market import MoverType, QuoteResponse
from chalicelib.models.streaming import (
    INVALID_MESSAGE_COST,
    MESSAGE_COSTS,
    QUOTE_TOPIC_PREFIX,
    AckData,
    AckMessage,
    Action,
    Channel,
    ClientRequest,
    MessageCounts,
    PongData,
    PongMessage,
    ProtocolError,
    StreamFormat,
    StreamUpdate,
    SubscriptionSet,
    TopicCount,
    WsStatsResponse,
    encode,
    error_message,
    indices_update,
    movers_update,
    parse_client_message,
    quote_topic,
    quote_update,
    request_for_topics,
    sectors_update,
    sentiment_update,
)
from chalicelib.ports import (
    Broadcaster,
    BucketLimits,
    BudgetDecision,
    ConnectionIdentity,
    ConnectionRecord,
    ConnectionStore,
    DeliveryStatus,
    MessageBudget,
    ShardDispatcher,
    ShardTask,
    StoredRound,
    StreamState,
    TopicRegistry,
    shard_for,
)
from chalicelib.services import frames
from chalicelib.services.frames import API_GATEWAY_FRAME_BYTES, FrameBuilder, FrameTarget
from chalicelib.services.market_data import MarketDataService
from chalicelib.services.symbol_directory import is_listed

logger = observability.logger

# A round's stored items outlive any worker that could still deliver it (Lambda's maximum event age for
# the worker is 60 s; see infra/deploy.py).
ROUND_TTL_SECONDS = 300
# The registry's copy is read again from DynamoDB (after a refresh has dispatched its round) once it is
# this old: it bounds how long removed pairs linger in it and how long a pair added while Redis was
# unreachable goes unseen.
REGISTRY_COPY_MAX_AGE_SECONDS = 300
# API Gateway closes every WebSocket connection after 2 hours.
API_GATEWAY_MAX_CONNECTION_SECONDS = 2 * 3600
MOVERS_SNAPSHOT_LIMIT = 10


def _unknown_connection() -> ProtocolError:
    return ProtocolError("unknown_connection", "this connection is not registered (expired); reconnect")


_CONNECTION_BUDGET = BucketLimits(capacity=60, refill_per_second=1.0)
_USER_BUDGET = BucketLimits(capacity=150, refill_per_second=2.5)
_TOKEN_EXPIRED = "the token this connection was opened with has expired; reconnect with a fresh token"  # noqa: S105 - a message


def _ack(kind: Literal["subscribed", "unsubscribed"], topics: list[str]) -> bytes:
    return encode(AckMessage(type=kind, data=AckData(subscriptions=SubscriptionSet.from_topics(topics))))


class TooManyConnections(AppError):
    status_code = 429
    code = "too_many_connections"


class UnknownFormat(ValidationFailed):
    code = "unknown_format"


def parse_format(value: str | None) -> StreamFormat:
    """The ``?format=`` of a $connect: absent or empty means the spec format; anything unknown is refused."""
    if value is None or value == "":
        return StreamFormat.SPEC
    try:
        return StreamFormat(value)
    except ValueError:
        known = ", ".join(f.value for f in StreamFormat)
        raise UnknownFormat(f"unknown format {value[:40]!r}; use one of: {known} (default spec)") from None


def _format_of(record: ConnectionRecord) -> StreamFormat:
    try:
        return StreamFormat(record.message_format)
    except ValueError:  # written by a newer version: the spec format is what every client understands
        return StreamFormat.SPEC


def lane_of(updates: Sequence[StreamUpdate]) -> str:
    """The publisher a round belongs to, from its topics: ``quote``, or the channel topics it carries."""
    families = {"quote" if u.topic.startswith(QUOTE_TOPIC_PREFIX) else u.topic for u in updates}
    return "+".join(sorted(families))


@dataclass(frozen=True)
class StreamingLimits:
    max_connections_per_user: int = 5
    max_subscriptions_per_connection: int = 50
    max_message_bytes: int = 16 * 1024
    ttl_margin_seconds: int = 600
    max_frame_bytes: int = API_GATEWAY_FRAME_BYTES
    resync_interval_seconds: int = 10
    shard_count: int = 16  # WS_SHARD_COUNT: a connection's shard is shard_for(its id, shard_count)
    max_symbols_per_user: int = 100
    connection_budget: BucketLimits = _CONNECTION_BUDGET
    user_budget: BucketLimits = _USER_BUDGET
    close_after_rejections: int = 10
    rejection_window_seconds: int = 60

    @property
    def connection_ttl_seconds(self) -> int:
        return API_GATEWAY_MAX_CONNECTION_SECONDS + self.ttl_margin_seconds


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

    def add(self, other: PublishReport) -> None:
        """Fold one shard's delivery into the round's report."""
        self.sent += other.sent
        self.gone += other.gone
        self.failed += other.failed
        self.connections += other.connections
        self.dropped += other.dropped
        self.expired += other.expired
        self.gone_connections.extend(other.gone_connections)


class StreamingService:
    def __init__(
        self,
        *,
        store: ConnectionStore,
        state: StreamState,
        market: MarketDataService,
        limits: StreamingLimits,
        budget: MessageBudget,
        clock: Callable[[], float] = time.time,
        lookup_concurrency: int = 16,
        dispatcher: ShardDispatcher | None = None,
    ) -> None:
        """``dispatcher`` starts one worker per shard of a round (Lambda async invoke in AWS and under
        ``make run``); None delivers every shard in this process."""
        self._dispatcher = dispatcher
        self._store = store
        self._state = state
        self._market = market
        self._limits = limits
        self._budget = budget
        self._clock = clock
        self._lookup_concurrency = lookup_concurrency
        self._frames = FrameBuilder(max_frame_bytes=limits.max_frame_bytes)
        self._last_round = 0

    # --- $connect / $disconnect -------------------------------------------------------------------

    def connect(
        self,
        connection_id: str,
        user_id: str,
        *,
        source_ip: str | None = None,
        user_agent: str | None = None,
        message_format: str | None = None,
        token_expires_at: int | None = None,
    ) -> ConnectionRecord:
        """Store a new connection in its shard; UnknownFormat for a ``format`` other than spec/batch,
        TooManyConnections when the user already holds the maximum (the store enforces it with a
        conditional write, so simultaneous connects cannot pass it). ``token_expires_at`` (the token's
        ``exp``) is kept with it: the connection is closed once it passes."""
        chosen = parse_format(message_format)
        now = self._clock()
        record = ConnectionRecord(
            connection_id=connection_id,
            user_id=user_id,
            connected_at=datetime.fromtimestamp(now, UTC),
            expires_at=int(now) + self._limits.connection_ttl_seconds,
            source_ip=source_ip,
            user_agent=user_agent[:256] if user_agent else None,
            message_format=chosen.value,
            shard=shard_for(connection_id, self._limits.shard_count),
            token_expires_at=token_expires_at,
        )
        cap = self._limits.max_connections_per_user
        if not self._store.add_connection(record, max_per_user=cap):
            observability.count("ConnectionRefused", dimensions={"reason": "per_user_cap"})
            raise TooManyConnections(f"this user already holds {cap} open connections (the maximum); close one first")
        self._budget.register(
            connection_id,
            ConnectionIdentity(user_id, token_expires_at),
            ttl_seconds=self._limits.connection_ttl_seconds,
        )
        observability.count("ConnectionOpened")
        return record

    def disconnect(self, connection_id: str) -> int:
        removed = self._store.remove_connection(connection_id)
        observability.count("ConnectionClosed")
        return removed

    # --- $default ---------------------------------------------------------------------------------

    def handle_message(self, connection_id: str, raw: str | None, broadcaster: Broadcaster) -> None:
        """Act on one client message and answer it (ack + snapshots, pong, or error) through
        ``broadcaster``. Never raises for bad input: the client gets an ``error`` message instead.

        The message's cost is taken from the budgets before anything else happens; the parse only
        decides the cost (it is pure computation on at most ``max_message_bytes``), and a message that
        fails it pays the highest cost before its error is answered."""
        problem: ProtocolError | None = None
        request: ClientRequest | None = None
        try:
            request = parse_client_message(
                raw,
                max_bytes=self._limits.max_message_bytes,
                max_items=self._limits.max_subscriptions_per_connection,
            )
        except ProtocolError as exc:
            problem = exc
        cost = MESSAGE_COSTS[request.action] if request is not None else INVALID_MESSAGE_COST
        try:
            decision = self._take_budget(connection_id, cost)
        except AppError as exc:  # the store is unreachable and Redis did not know the connection
            logger.warning("message not handled", extra={"code": exc.code, "detail": exc.message})
            self._reply(connection_id, broadcaster, [error_message(exc.code, "the request could not be completed")])
            return
        if decision is None:
            unknown = _unknown_connection()
            self._reply(connection_id, broadcaster, [error_message(unknown.code, unknown.message)])
            return
        if self._refused(connection_id, decision, broadcaster):
            return
        try:
            if problem is not None:
                raise problem
            assert request is not None  # noqa: S101 - problem is None exactly when the parse succeeded
            replies = self._replies(connection_id, request)
        except ProtocolError as exc:
            observability.count("ClientMessageRejected", dimensions={"code": exc.code})
            replies = [error_message(exc.code, exc.message)]
        except AppError as exc:  # storage down and the like: tell the client, keep the connection
            logger.warning("message not handled", extra={"code": exc.code, "detail": exc.message})
            replies = [error_message(exc.code, "the request could not be completed; try again shortly")]
        self._reply(connection_id, broadcaster, replies)

    def _reply(self, connection_id: str, broadcaster: Broadcaster, replies: Sequence[bytes]) -> None:
        for reply in replies:
            status = broadcaster.send(connection_id, reply)
            if status is DeliveryStatus.GONE:
                self._store.remove_connection(connection_id)
                return

    def _take_budget(self, connection_id: str, cost: int) -> BudgetDecision | None:
        """The budget's decision; None for a connection neither the budget nor the store knows. The
        budget learns a connection it lost (Redis restarted, or down and this container never saw its
        $connect) from the store: a read, no write."""
        take = functools.partial(
            self._budget.take,
            connection_id,
            cost,
            per_connection=self._limits.connection_budget,
            per_user=self._limits.user_budget,
            rejection_window_seconds=self._limits.rejection_window_seconds,
        )
        decision = take()
        if decision.identity is not None:
            return decision
        now = self._clock()
        record = self._store.get_connection(connection_id, now=now)
        if record is None:
            return None
        ttl = max(1, record.expires_at - int(now))
        self._budget.register(
            connection_id, ConnectionIdentity(record.user_id, record.token_expires_at), ttl_seconds=ttl
        )
        decision = take()
        return decision if decision.identity is not None else None

    def _refused(self, connection_id: str, decision: BudgetDecision, broadcaster: Broadcaster) -> bool:
        """Answer and act on an expired token or an exhausted budget; False when the message may proceed."""
        assert decision.identity is not None  # noqa: S101 - _take_budget returns known connections only
        expires_at = decision.identity.token_expires_at
        if expires_at is not None and self._clock() >= expires_at:
            observability.count("ClientMessageRejected", dimensions={"code": "token_expired"})
            broadcaster.send(connection_id, error_message("token_expired", _TOKEN_EXPIRED))
            self._close(connection_id, broadcaster, reason="token_expired", remove=True)
            return True
        if decision.allowed:
            return False
        observability.count("ClientMessageRejected", dimensions={"code": "rate_limited"})
        closing = decision.rejections >= self._limits.close_after_rejections
        message = f"over this connection's or its user's message budget; retry in {decision.retry_after_seconds} s" + (
            " (closing: the budget was exceeded too often)" if closing else ""
        )
        broadcaster.send(
            connection_id, error_message("rate_limited", message, retry_after=decision.retry_after_seconds)
        )
        if closing:
            # API Gateway runs $disconnect, which removes the connection: nothing is written here.
            self._close(connection_id, broadcaster, reason="rate_limited", remove=False)
        return True

    def _close(self, connection_id: str, broadcaster: Broadcaster, *, reason: str, remove: bool) -> None:
        status = broadcaster.close(connection_id)
        observability.count("ConnectionClosedByServer", dimensions={"reason": reason})
        logger.info("connection closed by the service", extra={"reason": reason, "status": status.value})
        if remove or status is DeliveryStatus.GONE:
            self._store.remove_connection(connection_id)

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
        if request.action is Action.RESYNC:
            interval = self._limits.resync_interval_seconds
            if not self._state.allow_resync(connection_id, interval_seconds=interval):
                raise ProtocolError(
                    "resync_rate_limited",
                    f"at most one resync per {interval} s per connection; try again shortly "
                    "(or re-read GET /api/v1/market/quotes)",
                )
            return self._numbered(connection, self._resync_snapshots(connection), now, empty_batch=True)
        cap = self._limits.max_subscriptions_per_connection
        requested = [t for t in request.topics if t not in connection.topics]
        if len(connection.topics) + len(requested) > cap:
            raise ProtocolError(
                "too_many_symbols",
                f"this connection would hold {len(connection.topics) + len(requested)} subscriptions; "
                f"at most {cap}. Unsubscribe from some first.",
            )
        if any(t.startswith(QUOTE_TOPIC_PREFIX) for t in requested):
            self._check_user_symbols(connection, requested, now)
        quotes = self._market.get_quotes(list(request.symbols)) if request.symbols else None
        items = quotes.quotes if quotes else []
        # Stored only once known to exist: quoted (cache or provider), or, when no provider can answer
        # right now, listed in the bundled S&P 500 list (its updates follow once a provider answers).
        # Anything else is never stored: nothing would arrive for it, and every refresh would pay for it.
        known = {quote_topic(i.symbol) for i in items if i.quote is not None or is_listed(i.symbol)}
        new_topics = [t for t in requested if not t.startswith(QUOTE_TOPIC_PREFIX) or t in known]
        current = self._store.add_subscriptions(connection_id, new_topics, expires_at=connection.expires_at)
        if current is None:
            raise _unknown_connection()
        # After the registry writes: the copy of the registry every refresh reads gains these pairs.
        self._state.add_to_registry_copy([(connection.shard, topic) for topic in new_topics])
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
        cap = self._limits.max_symbols_per_user
        held = {
            topic
            for record in [connection, *self._store.connections_of_user(connection.user_id, now=now)]
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
            batch = self._market.get_quotes(list(wanted.symbols))
            snapshots.extend(quote_update(item.quote, snapshot=True) for item in batch.quotes if item.quote)
        snapshots.extend(self._channel_snapshots(wanted.channels))
        return snapshots

    def _numbered(
        self, connection: ConnectionRecord, updates: list[StreamUpdate], now: float, *, empty_batch: bool = False
    ) -> list[bytes]:
        """Snapshot updates as this connection's data messages (its format), each with its ``seq``."""
        pending = self._frames.for_connection(
            connection.connection_id, _format_of(connection), updates, timestamp=now, empty_batch=empty_batch
        )
        outgoing, _ = frames.sequence(
            self._state, [pending], lane=None, round_id=0, ttl_seconds=self._limits.connection_ttl_seconds
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
            return indices_update(self._market.get_indices(), snapshot=True)
        if channel is Channel.SECTORS:
            return sectors_update(self._market.get_sectors(), snapshot=True)
        if channel is Channel.SENTIMENT:
            return sentiment_update(self._market.get_sentiment(), snapshot=True)
        return movers_update(
            *(self._market.get_movers(kind, MOVERS_SNAPSHOT_LIMIT) for kind in MoverType), snapshot=True
        )

    # --- fan-out ----------------------------------------------------------------------------------

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
        registry = self.topic_registry()
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

    def topic_registry(self) -> TopicRegistry:
        """Which topics have subscribers in which shards: the registry's copy in Redis (one round trip),
        or, without one, the registry itself (SHARD_COUNT Queries), copied for the next reader."""
        copy = self._state.registry_copy()
        return copy.registry if copy is not None else self.read_registry()

    def read_registry(self) -> TopicRegistry:
        """Read the registry from the store into a new copy: a new version is opened first, so a subscribe
        whose writes the read misses records its pairs under it."""
        version = self._state.start_registry_copy()
        built_at = self._clock()
        registry = self._store.topic_registry()
        if version is not None:
            self._state.store_registry_copy(version, registry, built_at=built_at)
        return registry

    def renew_registry_copy(self) -> bool:
        """Read the registry again if its copy is older than REGISTRY_COPY_MAX_AGE_SECONDS (a refresh calls
        this after dispatching its round, off the round's path). True when it did."""
        copy = self._state.registry_copy()
        if copy is not None and self._clock() - copy.built_at < REGISTRY_COPY_MAX_AGE_SECONDS:
            return False
        self.read_registry()
        return True

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
        records = list(self._store.connections_in_shard(shard, now=now))
        # A connection whose token expired gets nothing more: it is closed (and removed) here.
        expired = [r for r in records if r.token_expires_at is not None and r.token_expires_at <= now]
        for record in expired:
            self._close(record.connection_id, broadcaster, reason="token_expired", remove=True)
        report.expired = len(expired)
        live = [r for r in records if r.token_expires_at is None or r.token_expires_at > now]
        targets = [FrameTarget(r.connection_id, _format_of(r), r.topics) for r in live if topics & r.topics]
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
            ttl_seconds=self._limits.connection_ttl_seconds,
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
        for connection_id in dict.fromkeys(report.gone_connections):
            self._store.remove_connection(connection_id)
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
