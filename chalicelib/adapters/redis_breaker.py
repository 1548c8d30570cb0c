"""The providers' circuit breakers in Redis, shared by every Lambda.

Each decision is one Lua script, so it is atomic across concurrent Lambdas: a breaker's half-open probe
is handed to one caller only. Redis unreachable: breakers stay closed (a shared count no single
container can keep; refusing every provider call while Redis is down would turn a cache outage into a
full outage, and the vendors' own 429s still stop us).
"""

from __future__ import annotations

from typing import Unpack, cast

import redis

from chalicelib.adapters.redis_support import DegradingRedisAdapter, RedisOptions
from chalicelib.ports import BreakerState, BreakerStatus

_DAY_SECONDS = 86_400

# KEYS: breaker hash, probe token. ARGV: now, probe ttl ms.
# Returns 1 allowed (closed), 2 allowed as the half-open probe, 0 refused.
_ALLOW = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state or state == 'closed' then return 1 end
if state == 'open' then
  local until_ = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
  if tonumber(ARGV[1]) < until_ then return 0 end
end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('HSET', KEYS[1], 'state', 'half_open')
  return 2
end
return 0
"""

# KEYS: breaker hash, probe token. ARGV: now, threshold, cooldown seconds, error text, key ttl ms.
# Returns the new state if it changed, else ''.
_FAILURE = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'last_error', ARGV[4], 'last_error_at', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if state == 'half_open' or (state == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', tonumber(ARGV[1]) + tonumber(ARGV[3]))
  redis.call('DEL', KEYS[2])
  return 'open'
end
return ''
"""

# KEYS: breaker hash, probe token. Returns the previous state if it was not closed, else ''.
_SUCCESS = """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
redis.call('HSET', KEYS[1], 'failures', 0)
if state ~= 'closed' then
  redis.call('HSET', KEYS[1], 'state', 'closed')
  redis.call('HDEL', KEYS[1], 'open_until')
  redis.call('DEL', KEYS[2])
  return state
end
return ''
"""


def _decode(value: object) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisCircuitBreaker(DegradingRedisAdapter):
    """One breaker per provider, shared by every Lambda: consecutive failures open it for a cool-down,
    after which a single probe call is let through (half-open); its outcome closes or re-opens it."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        failure_threshold: int,
        cooldown_seconds: float,
        **options: Unpack[RedisOptions],
    ) -> None:
        super().__init__(client, **options)
        self._threshold = failure_threshold
        self._cooldown = cooldown_seconds
        self._allow = client.register_script(_ALLOW)
        self._failure = client.register_script(_FAILURE)
        self._success = client.register_script(_SUCCESS)

    def _keys(self, vendor: str) -> list[str]:
        return [self._key(f"breaker:{vendor}"), self._key(f"breaker:{vendor}:probe")]

    def allow(self, vendor: str) -> bool:
        # The probe token expires after one cool-down, so a probe that never reports frees the slot.
        return self._guarded(
            "breaker",
            lambda: int(self._allow(keys=self._keys(vendor), args=[self._clock(), int(self._cooldown * 1000)])) > 0,
            True,
        )

    def record_success(self, vendor: str) -> BreakerState | None:
        previous = self._guarded("breaker", lambda: _decode(self._success(keys=self._keys(vendor))), None)
        return BreakerState(previous) if previous else None

    def record_failure(self, vendor: str, error: str) -> BreakerState | None:
        changed = self._guarded(
            "breaker",
            lambda: _decode(
                self._failure(
                    keys=self._keys(vendor),
                    args=[self._clock(), self._threshold, self._cooldown, error[:300], _DAY_SECONDS * 1000],
                )
            ),
            None,
        )
        return BreakerState(changed) if changed else None

    def status(self, vendor: str) -> BreakerStatus | None:
        # redis-py types replies as bytes-or-str; this client does not decode them.
        raw = cast(
            "dict[bytes, bytes] | None",
            self._guarded("breaker", lambda: self._client.hgetall(self._keys(vendor)[0]), None),
        )
        if raw is None:
            return None
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        state = BreakerState(fields.get("state", "closed"))
        open_until = float(fields["open_until"]) if "open_until" in fields else None
        if state is BreakerState.OPEN and open_until is not None and open_until <= self._clock():
            state = BreakerState.HALF_OPEN  # cool-down over: the next call is a probe
        return BreakerStatus(
            state=state,
            consecutive_failures=int(fields.get("failures", 0)),
            open_until=open_until if state is BreakerState.OPEN else None,
            last_error=fields.get("last_error"),
            last_error_at=float(fields["last_error_at"]) if "last_error_at" in fields else None,
        )
