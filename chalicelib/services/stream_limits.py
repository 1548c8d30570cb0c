"""The streaming service's limits (per connection, per user, per message), set from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.ports import BucketLimits, MessageBudgetLimits
from chalicelib.services.frames import API_GATEWAY_FRAME_BYTES
from chalicelib.settings import Settings

# API Gateway closes every WebSocket connection after 2 hours.
API_GATEWAY_MAX_CONNECTION_SECONDS = 2 * 3600

_MESSAGE_BUDGET = MessageBudgetLimits(
    per_connection=BucketLimits(capacity=60, refill_per_second=1.0),
    per_user=BucketLimits(capacity=150, refill_per_second=2.5),
    rejection_window_seconds=60,
)


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
    message_budget: MessageBudgetLimits = _MESSAGE_BUDGET
    close_after_rejections: int = 10  # refusals within the budget's rejection window that close a connection

    @property
    def connection_ttl_seconds(self) -> int:
        return API_GATEWAY_MAX_CONNECTION_SECONDS + self.ttl_margin_seconds

    @classmethod
    def of(cls, settings: Settings) -> StreamingLimits:
        """The one reading of the WS_* settings (the service enforces it; the AsyncAPI document states it)."""
        return cls(
            max_connections_per_user=settings.ws_max_connections_per_user,
            max_subscriptions_per_connection=settings.ws_max_subscriptions_per_connection,
            max_message_bytes=settings.ws_max_message_bytes,
            max_frame_bytes=settings.ws_max_frame_bytes,
            resync_interval_seconds=settings.ws_resync_interval_seconds,
            shard_count=settings.ws_shard_count,
            max_symbols_per_user=settings.ws_max_symbols_per_user,
            message_budget=MessageBudgetLimits(
                per_connection=BucketLimits(
                    settings.ws_budget_connection_capacity, settings.ws_budget_connection_refill_per_second
                ),
                per_user=BucketLimits(settings.ws_budget_user_capacity, settings.ws_budget_user_refill_per_second),
                rejection_window_seconds=settings.ws_budget_rejection_window_seconds,
            ),
            close_after_rejections=settings.ws_budget_close_after_rejections,
        )
