"""Shared provider quotas and per-user rate limits in Redis (the providers' circuit breakers: redis_breaker.py).

Every decision is one Lua script, so it is atomic across concurrent Lambdas: a quota unit is checked
and taken in the same step (never read-then-write). Windows are fixed (per UTC minute, per UTC day),
which is how the vendors count.

Redis unreachable: the per-user budget falls back to a per-container (in-process) limiter with the
same limit, so a user still cannot go past it through one container (across N warm containers, at most
N times it: each keeps its own count). Vendor quotas grant (marked ``degraded``): a shared count no
single container can keep (the breakers stay closed for the same reason), and refusing every provider
call while Redis is down would turn a cache outage into a full outage. The vendors' own 429s still stop us (the
chain moves on to the next vendor), and the per-user budget still bounds what each user can cause.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Unpack

import redis

from chalicelib.adapters.redis_support import DegradingRedisAdapter, RedisOptions, riding, subject_key, withdraw
from chalicelib.errors import RateLimited
from chalicelib.ports import (
    QuotaDecision,
    QuotaLimits,
    QuotaUsage,
    RateLimitDecision,
)

_DAY_SECONDS = 86_400

# KEYS: minute counter, day counter. ARGV: minute limit, day limit, minute ttl ms, day ttl ms.
# Returns {granted, exhausted window (0 none, 1 minute, 2 day), minute count, day count (after the take)}.
_TAKE_QUOTA = """
local m = tonumber(redis.call('GET', KEYS[1]) or '0')
local d = tonumber(redis.call('GET', KEYS[2]) or '0')
local ml = tonumber(ARGV[1])
local dl = tonumber(ARGV[2])
if ml > 0 and m >= ml then return {0, 1, m, d} end
if dl > 0 and d >= dl then return {0, 2, m, d} end
m = redis.call('INCR', KEYS[1])
if m == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
d = redis.call('INCR', KEYS[2])
if d == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return {1, 0, m, d}
"""

# KEYS: the subject's counter for this minute. ARGV: ttl ms, units. Returns the count including these units.
_HIT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[2])
if n == tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"""


def _rate_decision(count: int, limit_per_minute: int, reset_seconds: int) -> RateLimitDecision:
    """A subject's budget after its minute's total reached ``count``."""
    return RateLimitDecision(
        allowed=count <= limit_per_minute,
        limit=limit_per_minute,
        remaining=max(0, limit_per_minute - count),
        reset_seconds=reset_seconds,
    )


class LocalRateLimiter:
    """The per-user budget of one container, for when Redis cannot be reached: the same fixed UTC
    minute windows, counted in process memory. Bounded: at most ``max_subjects`` subjects per minute;
    past that, unknown subjects are refused (a flood of fresh identities cannot grow memory or get a
    free pass while the shared limiter is down)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, max_subjects: int = 10_000) -> None:
        self._clock = clock
        self._max_subjects = max_subjects
        self._minute = -1
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, subject: str, units: int, limit_per_minute: int) -> RateLimitDecision:
        now = self._clock()
        minute, reset = int(now // 60), 60 - int(now % 60)
        with self._lock:
            if minute != self._minute:
                self._minute, self._counts = minute, {}
            if subject not in self._counts and len(self._counts) >= self._max_subjects:
                return RateLimitDecision(allowed=False, limit=limit_per_minute, remaining=0, reset_seconds=reset)
            count = self._counts.get(subject, 0) + units
            self._counts[subject] = count
        return _rate_decision(count, limit_per_minute, reset)


class RedisQuotas(DegradingRedisAdapter):
    """Shared per-provider quotas and per-user request budgets."""

    def __init__(self, client: redis.Redis, **options: Unpack[RedisOptions]) -> None:
        super().__init__(client, **options)
        self._take = client.register_script(_TAKE_QUOTA)
        self._hit = client.register_script(_HIT)
        self._local = LocalRateLimiter(clock=self._clock)

    def _windows(self, vendor: str) -> tuple[str, str, int, int]:
        now = self._clock()
        minute = int(now // 60)
        day = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%d")
        minute_left = 60 - int(now % 60)
        day_left = _DAY_SECONDS - int(now % _DAY_SECONDS)
        return (
            self._key(f"quota:{vendor}:minute:{minute}"),
            self._key(f"quota:{vendor}:day:{day}"),
            minute_left,
            day_left,
        )

    def try_take(self, vendor: str, limits: QuotaLimits) -> QuotaDecision:
        if limits.per_minute == 0 and limits.per_day == 0:
            return QuotaDecision(granted=True)
        minute_key, day_key, minute_left, day_left = self._windows(vendor)
        taken = self._guarded(
            "quota",
            lambda: self._take(
                keys=[minute_key, day_key],
                # The counters outlive their window a little so usage() can still read them at the edge.
                args=[limits.per_minute, limits.per_day, (minute_left + 5) * 1000, (day_left + 60) * 1000],
            ),
            None,
        )
        if taken is None:
            return QuotaDecision(granted=True, degraded=True)
        granted, window, minute_used, day_used = taken
        if granted:
            left = [
                limit - int(used)
                for limit, used in ((limits.per_minute, minute_used), (limits.per_day, day_used))
                if limit
            ]
            return QuotaDecision(granted=True, remaining=min(left) if left else None)
        if int(window) == 1:
            return QuotaDecision(granted=False, exhausted_window="minute", retry_after_seconds=minute_left)
        return QuotaDecision(granted=False, exhausted_window="day", retry_after_seconds=day_left)

    def usage(self, vendor: str) -> QuotaUsage | None:
        minute_key, day_key, minute_left, day_left = self._windows(vendor)
        used = self._guarded("quota usage", lambda: self._client.mget([minute_key, day_key]), None)
        if used is None:
            return None
        minute_used, day_used = used
        return QuotaUsage(
            minute_used=int(minute_used or 0),
            day_used=int(day_used or 0),
            minute_resets_in_seconds=minute_left,
            day_resets_in_seconds=day_left,
        )

    def deferred_hit(self, subject: str, limit_per_minute: int) -> PendingHit:
        """``hit(subject, limit_per_minute)`` decided in the request's next Redis round trip: use it as
        ``with pending.riding(): ...`` around the handler, then read ``pending.decision()``. The cache read
        a cached request makes anyway carries it (one round trip for both); a Redis call of any other
        kind settles it first, on its own; ``decision()`` settles it if nothing did. When it rides and the
        budget is spent, the request stops there (``RateLimited`` from the read), before any upstream call."""
        return PendingHit(self, subject, limit_per_minute)

    def hit(self, subject: str, limit_per_minute: int, *, units: int = 1) -> RateLimitDecision:
        """Add ``units`` to the subject's budget for this minute; allowed while the total stays within
        ``limit_per_minute``. The request itself costs 1; its upstream calls are charged afterwards
        (``charge``), so a cache miss uses up more of the budget than a hit."""
        now = self._clock()
        reset = 60 - int(now % 60)
        key = self._key(f"ratelimit:{subject_key(subject)}:{int(now // 60)}")
        count = self._guarded("rate limit", lambda: int(self._hit(keys=[key], args=[(reset + 5) * 1000, units])), None)
        if count is None:
            return self._local.add(subject, units, limit_per_minute)
        return _rate_decision(count, limit_per_minute, reset)


class PendingHit:
    """One request's rate-limit hit, waiting to ride the request's next Redis round trip
    (``redis_support.Rider``). Keys and windows are fixed when the request starts, as ``hit`` fixes them."""

    def __init__(self, quotas: RedisQuotas, subject: str, limit_per_minute: int) -> None:
        self._quotas = quotas
        self._subject = subject
        self._limit = limit_per_minute
        now = quotas._clock()
        self._reset = 60 - int(now % 60)
        self._key = quotas._key(f"ratelimit:{subject_key(subject)}:{int(now // 60)}")
        self._decision: RateLimitDecision | None = None

    @property
    def client(self) -> redis.Redis:
        return self._quotas._client

    @contextlib.contextmanager
    def riding(self) -> Iterator[None]:
        if not self._quotas.available:  # no round trip is coming: the local limiter decides now
            self._decision = self._quotas._local.add(self._subject, 1, self._limit)
            yield
            return
        with riding(self):
            yield

    def queue(self, pipe: redis.client.Pipeline) -> int:
        # The script's text, not its SHA: the hit rides another adapter's pipeline, whose replies go to
        # that adapter (redis_support.run_scripts' NOSCRIPT retry is not available there).
        pipe.eval(_HIT, 1, self._key, (self._reset + 5) * 1000, 1)
        return 1

    def settle(self, replies: list[Any]) -> None:
        decision = _rate_decision(int(replies[0]), self._limit, self._reset)
        self._decision = decision
        if not decision.allowed:
            raise RateLimited(
                f"more than {decision.limit} requests in a minute; retry in {decision.reset_seconds} s",
                retry_after_seconds=decision.reset_seconds,
            )

    def settle_failed(self, exc: Exception) -> None:
        self._quotas._failed("rate limit", exc)
        self._decision = self._quotas._local.add(self._subject, 1, self._limit)

    def settle_alone(self) -> None:
        self._decision = self.decision()
        if not self._decision.allowed:
            raise RateLimited(
                f"more than {self._decision.limit} requests in a minute; retry in {self._decision.reset_seconds} s",
                retry_after_seconds=self._decision.reset_seconds,
            )

    def decision(self) -> RateLimitDecision:
        """The request's decision (settled now, with a round trip of its own, if nothing carried it)."""
        if self._decision is None:
            withdraw(self)  # else hit()'s own Redis call would take this rider and count it a second time
            self._decision = self._quotas.hit(self._subject, self._limit)
        return self._decision
