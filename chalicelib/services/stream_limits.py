"""The streaming service's limits (per connection, per user, per message), set from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from chalicelib.ports import BucketLimits
from chalicelib.services.frames import API_GATEWAY_FRAME_BYTES

# API Gateway closes every WebSocket connection after 2 hours.
API_GATEWAY_MAX_CONNECTION_SECONDS = 2 * 3600

_CONNECTION_BUDGET = BucketLimits(capacity=60, refill_per_second=1.0)
_USER_BUDGET = BucketLimits(capacity=150, refill_per_second=2.5)


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
