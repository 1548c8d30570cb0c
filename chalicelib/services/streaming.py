"""Real-time streaming: connections, their messages, and (through services/fanout.py) fan-out.

The three WebSocket handlers call ``connect`` / ``handle_message`` / ``disconnect``; the scheduled
refresh jobs call ``publish``. Policy lives here and in the two modules this one composes
(subscriptions.py: what a request does; fanout.py: rounds to subscribers); storage and delivery sit
behind the ConnectionStore, StreamState and Broadcaster ports.

- A connection lives at most API Gateway's 2 hours; its record (and its subscriptions) carry that
  plus a margin as DynamoDB TTL, and every read filters on it.
- Bad client input is answered with an ``error`` message; it never raises out of the handler, so the
  connection stays open.
- Every client message first pays its cost (``MESSAGE_COSTS``) from the connection's and the user's token
  buckets (MessageBudget, one Redis step), before any DynamoDB write or provider call: over budget is a
  ``rate_limited`` error with ``retry_after``, and a connection refused ``close_after_rejections`` times
  within the window is closed through the management API. A connection whose token expired is told so
  and closed, on its next message or by the fan-out worker, whichever comes first.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from chalicelib import observability
from chalicelib.errors import AppError, ValidationFailed
from chalicelib.models.streaming import (
    INVALID_MESSAGE_COST,
    MESSAGE_COSTS,
    ClientRequest,
    MessageCounts,
    ProtocolError,
    StreamFormat,
    TopicCount,
    WsStatsResponse,
    error_message,
    parse_client_message,
)
from chalicelib.ports import (
    Broadcaster,
    BudgetDecision,
    ConnectionIdentity,
    ConnectionRecord,
    ConnectionStore,
    DeliveryStatus,
    MessageBudget,
    ShardDispatcher,
    StreamState,
    shard_for,
)
from chalicelib.services.fanout import (
    REGISTRY_COPY_MAX_AGE_SECONDS,
    ROUND_TTL_SECONDS,
    FanOut,
    PublishReport,
    lane_of,
)
from chalicelib.services.frames import FrameBuilder
from chalicelib.services.market_data import MarketDataService
from chalicelib.services.stream_limits import StreamingLimits
from chalicelib.services.subscriptions import Subscriptions, unknown_connection

__all__ = [
    "REGISTRY_COPY_MAX_AGE_SECONDS",
    "ROUND_TTL_SECONDS",
    "PublishReport",
    "StreamingLimits",
    "StreamingService",
    "TooManyConnections",
    "UnknownFormat",
    "lane_of",
    "parse_format",
]

logger = observability.logger

_TOKEN_EXPIRED = "the token this connection was opened with has expired; reconnect with a fresh token"  # noqa: S105 - a message


class TooManyConnections(AppError, status=429, code="too_many_connections"): ...


class UnknownFormat(ValidationFailed, code="unknown_format"): ...


def parse_format(value: str | None) -> StreamFormat:
    """The ``?format=`` of a $connect: absent or empty means the spec format; anything unknown is refused."""
    if value is None or value == "":
        return StreamFormat.SPEC
    try:
        return StreamFormat(value)
    except ValueError:
        known = ", ".join(f.value for f in StreamFormat)
        raise UnknownFormat(f"unknown format {value[:40]!r}; use one of: {known} (default spec)") from None


class StreamingService(FanOut):
    """Connections and their messages; publish and delivery are FanOut's (fanout.py)."""

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
        builder = FrameBuilder(max_frame_bytes=limits.max_frame_bytes)
        super().__init__(
            store=store,
            state=state,
            frames=builder,
            connection_ttl_seconds=limits.connection_ttl_seconds,
            clock=clock,
            lookup_concurrency=lookup_concurrency,
            dispatcher=dispatcher,
            shard_count=limits.shard_count,
        )
        self._market = market  # what subscriptions quote and snapshot from
        self._limits = limits
        self._budget = budget

        def now() -> float:  # the subscriptions read this service's clock, so replacing it moves both
            return self._clock()

        self._subscriptions = Subscriptions(
            store=store, state=state, market=market, limits=limits, frames=builder, clock=now
        )

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
        removed = self.removed(connection_id)
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
            unknown = unknown_connection()
            self._reply(connection_id, broadcaster, [error_message(unknown.code, unknown.message)])
            return
        if self._refused(connection_id, decision, broadcaster):
            return
        try:
            if problem is not None:
                raise problem
            assert request is not None  # noqa: S101 - problem is None exactly when the parse succeeded
            replies = self._subscriptions.replies(connection_id, request)
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
                self.removed(connection_id)
                return

    def _take_budget(self, connection_id: str, cost: int) -> BudgetDecision | None:
        """The budget's decision; None for a connection neither the budget nor the store knows. The
        budget learns a connection it lost (Redis restarted, or down and this container never saw its
        $connect) from the store: a read, no write."""
        take = functools.partial(self._budget.take, connection_id, cost, self._limits.message_budget)
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
