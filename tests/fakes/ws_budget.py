"""An in-memory MessageBudget: token buckets per connection and per user taken both-or-nothing in one
step, refilled from an injected clock, rejections counted per window, registrations that expire.

Runs through the MessageBudget contract tests with RedisMessageBudget (tests/contract/test_redis_ws_budget.py)."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from chalicelib.ports import BucketLimits, BudgetDecision, ConnectionIdentity, MessageBudgetLimits
from tests.fakes.clock import FakeClock


@dataclass
class _Bucket:
    tokens: float
    at: float

    def level(self, now: float, limits: BucketLimits) -> float:
        return min(limits.capacity, self.tokens + max(0.0, now - self.at) * limits.refill_per_second)


@dataclass
class _Connection:
    identity: ConnectionIdentity
    expires_at: float
    bucket: _Bucket | None = None
    rejections: int = 0
    rejections_since: float = 0.0


class InMemoryMessageBudget:
    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or FakeClock()
        self._lock = threading.Lock()
        self._connections: dict[str, _Connection] = {}
        self._users: dict[str, _Bucket] = {}

    def register(self, connection_id: str, identity: ConnectionIdentity, *, ttl_seconds: int) -> None:
        with self._lock:
            self._connections[connection_id] = _Connection(identity, self._clock() + ttl_seconds)

    def take(self, connection_id: str, cost: int, limits: MessageBudgetLimits) -> BudgetDecision:
        now = self._clock()
        per_connection, per_user = limits.per_connection, limits.per_user
        with self._lock:
            connection = self._connections.get(connection_id)
            if connection is not None and now >= connection.expires_at:
                del self._connections[connection_id]
                connection = None
            if connection is None:
                return BudgetDecision(allowed=False, identity=None)
            user_id = connection.identity.user_id
            c_bucket = connection.bucket or _Bucket(per_connection.capacity, now)
            u_bucket = self._users.get(user_id) or _Bucket(per_user.capacity, now)
            c, u = c_bucket.level(now, per_connection), u_bucket.level(now, per_user)
            if c >= cost and u >= cost:
                connection.bucket = _Bucket(c - cost, now)
                self._users[user_id] = _Bucket(u - cost, now)
                return BudgetDecision(allowed=True, identity=connection.identity)
            wait = max(
                (cost - c) / per_connection.refill_per_second if c < cost else 0.0,
                (cost - u) / per_user.refill_per_second if u < cost else 0.0,
            )
            if now - connection.rejections_since >= limits.rejection_window_seconds:
                connection.rejections, connection.rejections_since = 0, now
            connection.rejections += 1
            return BudgetDecision(
                allowed=False,
                identity=connection.identity,
                retry_after_seconds=max(1, math.ceil(wait)),
                rejections=connection.rejections,
            )
