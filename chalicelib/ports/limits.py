"""Shared quotas, per-user rate limits, message budgets and circuit breakers (Redis in AWS)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


@dataclass(frozen=True)
class QuotaLimits:
    """A provider's shared allowance; 0 means no limit for that window."""

    per_minute: int
    per_day: int


@dataclass(frozen=True)
class QuotaDecision:
    granted: bool
    exhausted_window: str | None = None  # "minute" or "day" when refused
    retry_after_seconds: int = 0
    degraded: bool = False  # granted without coordination because the backend is down
    remaining: int | None = None  # units left in the tighter window after this take (None: unlimited/unknown)


@dataclass(frozen=True)
class QuotaUsage:
    minute_used: int
    day_used: int
    minute_resets_in_seconds: int
    day_resets_in_seconds: int


class Quotas(Protocol):
    def try_take(self, vendor: str, limits: QuotaLimits) -> QuotaDecision:
        """Take one unit from both windows atomically, or nothing at all when either is exhausted."""
        ...

    def usage(self, vendor: str) -> QuotaUsage | None: ...


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


class RateLimiter(Protocol):
    def hit(self, subject: str, limit_per_minute: int, *, units: int = 1) -> RateLimitDecision:
        """Add ``units`` to the subject's per-minute budget; never allows everything when the shared
        store is down (a per-container limiter takes over)."""
        ...


class DeferredRateLimit(Protocol):
    """One request's rate-limit hit, decided in the request's first round trip to the limiter's store
    (a cached request's read carries it), or by ``decision()`` if nothing did."""

    def riding(self) -> AbstractContextManager[None]:
        """Around the handler: while it runs, the hit waits for the request's first round trip."""
        ...

    def decision(self) -> RateLimitDecision: ...


@dataclass(frozen=True)
class BucketLimits:
    """A token bucket: holds at most ``capacity`` units (the burst) and refills ``refill_per_second``."""

    capacity: int
    refill_per_second: float


@dataclass(frozen=True)
class MessageBudgetLimits:
    """What a client message's cost is taken from: its connection's bucket and its user's (all the user's
    connections share one); refusals are counted within the rejection window."""

    per_connection: BucketLimits
    per_user: BucketLimits
    rejection_window_seconds: int


@dataclass(frozen=True)
class ConnectionIdentity:
    """Who holds a WebSocket connection, and until when its token is valid (epoch seconds; None: unknown)."""

    user_id: str
    token_expires_at: int | None = None


@dataclass(frozen=True)
class BudgetDecision:
    """The outcome of taking a client message's cost from its connection's and its user's buckets.

    ``identity`` None: the budget does not know the connection (never registered, or its state was lost);
    nothing was taken, the caller registers it and asks again. ``rejections``: the connection's refusals
    within the rejection window, this one included (0 when allowed)."""

    allowed: bool
    identity: ConnectionIdentity | None
    retry_after_seconds: int = 0
    rejections: int = 0
    degraded: bool = False  # decided by this container alone because the shared backend is down


class MessageBudget(Protocol):
    """Token buckets for WebSocket client messages, per connection and per user (Redis in AWS)."""

    def register(self, connection_id: str, identity: ConnectionIdentity, *, ttl_seconds: int) -> None:
        """Remember who holds the connection (at $connect), with full buckets."""
        ...

    def take(self, connection_id: str, cost: int, limits: MessageBudgetLimits) -> BudgetDecision:
        """Atomically take ``cost`` from both buckets, or nothing when either lacks it (then count a
        rejection). Never raises for an unreachable backend: each container then keeps its own buckets,
        so a flood is still refused (per container) rather than let through."""
        ...


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerStatus:
    state: BreakerState
    consecutive_failures: int
    open_until: float | None
    last_error: str | None
    last_error_at: float | None


class CircuitBreaker(Protocol):
    def allow(self, vendor: str) -> bool:
        """Closed: yes. Open: no until the cool-down ends; then one caller at a time gets a probe."""
        ...

    def record_success(self, vendor: str) -> BreakerState | None:
        """Close the breaker; returns the previous state when it changed."""
        ...

    def record_failure(self, vendor: str, error: str) -> BreakerState | None:
        """Count a failure; returns the new state when it changed (opened)."""
        ...

    def status(self, vendor: str) -> BreakerStatus | None: ...
