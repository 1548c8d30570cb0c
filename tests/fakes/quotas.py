"""In-memory vendor quotas, per-user rate limits and circuit breakers: the same fixed UTC windows,
take-both-or-nothing quota units and one-probe-at-a-time half-open breakers as the Redis adapters, on
an injected clock. ``down`` makes them degrade as the Redis adapters do with Redis unreachable.

Run through the contract tests with RedisQuotas and RedisCircuitBreaker (tests/contract/test_redis_quotas.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from chalicelib.adapters.redis_quotas import LocalRateLimiter
from chalicelib.ports import (
    BreakerState,
    BreakerStatus,
    QuotaDecision,
    QuotaLimits,
    QuotaUsage,
    RateLimitDecision,
)
from tests.fakes.clock import FakeClock

_DAY_SECONDS = 86_400


class InMemoryQuotas:
    """Quotas and RateLimiter in one, as RedisQuotas is."""

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or FakeClock()
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}  # window key → units taken
        self._local = LocalRateLimiter(clock=self._clock)  # the per-container fallback when down
        self.down = False
        self.taken: list[str] = []  # vendors, in the order units were granted (counting at the boundary)

    def _windows(self, vendor: str) -> tuple[str, str, int, int]:
        now = self._clock()
        day = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%d")
        return (
            f"quota:{vendor}:minute:{int(now // 60)}",
            f"quota:{vendor}:day:{day}",
            60 - int(now % 60),
            _DAY_SECONDS - int(now % _DAY_SECONDS),
        )

    def try_take(self, vendor: str, limits: QuotaLimits) -> QuotaDecision:
        if limits.per_minute == 0 and limits.per_day == 0:
            self.taken.append(vendor)
            return QuotaDecision(granted=True)
        if self.down:
            self.taken.append(vendor)
            return QuotaDecision(granted=True, degraded=True)
        minute_key, day_key, minute_left, day_left = self._windows(vendor)
        with self._lock:
            minute, day = self._counts.get(minute_key, 0), self._counts.get(day_key, 0)
            if limits.per_minute and minute >= limits.per_minute:
                return QuotaDecision(granted=False, exhausted_window="minute", retry_after_seconds=minute_left)
            if limits.per_day and day >= limits.per_day:
                return QuotaDecision(granted=False, exhausted_window="day", retry_after_seconds=day_left)
            self._counts[minute_key], self._counts[day_key] = minute + 1, day + 1
            self.taken.append(vendor)
        left = [limit - used for limit, used in ((limits.per_minute, minute + 1), (limits.per_day, day + 1)) if limit]
        return QuotaDecision(granted=True, remaining=min(left) if left else None)

    def usage(self, vendor: str) -> QuotaUsage | None:
        if self.down:
            return None
        minute_key, day_key, minute_left, day_left = self._windows(vendor)
        with self._lock:
            return QuotaUsage(self._counts.get(minute_key, 0), self._counts.get(day_key, 0), minute_left, day_left)

    def hit(self, subject: str, limit_per_minute: int, *, units: int = 1) -> RateLimitDecision:
        now = self._clock()
        if self.down:
            return self._local.add(subject, units, limit_per_minute)
        key = f"ratelimit:{subject}:{int(now // 60)}"
        with self._lock:
            count = self._counts.get(key, 0) + units
            self._counts[key] = count
        return RateLimitDecision(
            allowed=count <= limit_per_minute,
            limit=limit_per_minute,
            remaining=max(0, limit_per_minute - count),
            reset_seconds=60 - int(now % 60),
        )


@dataclass
class _Breaker:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    open_until: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None


class InMemoryCircuitBreaker:
    def __init__(
        self, *, failure_threshold: int, cooldown_seconds: float, clock: Callable[[], float] | None = None
    ) -> None:
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._clock = clock or FakeClock()
        self._lock = threading.Lock()
        self._breakers: dict[str, _Breaker] = {}
        self._probes: dict[str, float] = {}  # vendor → when its probe token expires
        self.down = False

    def allow(self, vendor: str) -> bool:
        if self.down:
            return True
        now = self._clock()
        with self._lock:
            breaker = self._breakers.setdefault(vendor, _Breaker())
            if breaker.state is BreakerState.CLOSED:
                return True
            if breaker.state is BreakerState.OPEN and now < (breaker.open_until or 0.0):
                return False
            if self._probes.get(vendor, 0.0) > now:
                return False  # another caller holds the probe
            self._probes[vendor] = now + self._cooldown  # a probe that never reports frees the slot
            breaker.state = BreakerState.HALF_OPEN
            return True

    def record_success(self, vendor: str) -> BreakerState | None:
        if self.down:
            return None
        with self._lock:
            breaker = self._breakers.setdefault(vendor, _Breaker())
            breaker.failures = 0
            previous = breaker.state
            if previous is BreakerState.CLOSED:
                return None
            breaker.state, breaker.open_until = BreakerState.CLOSED, None
            self._probes.pop(vendor, None)
            return previous

    def record_failure(self, vendor: str, error: str) -> BreakerState | None:
        if self.down:
            return None
        now = self._clock()
        with self._lock:
            breaker = self._breakers.setdefault(vendor, _Breaker())
            breaker.failures += 1
            breaker.last_error, breaker.last_error_at = error[:300], now
            if breaker.state is BreakerState.HALF_OPEN or (
                breaker.state is BreakerState.CLOSED and breaker.failures >= self._threshold
            ):
                breaker.state, breaker.open_until = BreakerState.OPEN, now + self._cooldown
                self._probes.pop(vendor, None)
                return BreakerState.OPEN
            return None

    def status(self, vendor: str) -> BreakerStatus | None:
        if self.down:
            return None
        now = self._clock()
        with self._lock:
            breaker = replace(self._breakers.get(vendor, _Breaker()))
        state = breaker.state
        if state is BreakerState.OPEN and breaker.open_until is not None and breaker.open_until <= now:
            state = BreakerState.HALF_OPEN  # cool-down over: the next call is a probe
        return BreakerStatus(
            state=state,
            consecutive_failures=breaker.failures,
            open_until=breaker.open_until if state is BreakerState.OPEN else None,
            last_error=breaker.last_error,
            last_error_at=breaker.last_error_at,
        )
