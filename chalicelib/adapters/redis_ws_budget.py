"""WebSocket message budgets in Redis: one token bucket per connection and one per user.

``register`` (at $connect) writes the connection's hash ``ws:budget:conn:<id>``: who holds it (``sub`` as
the token names it, ``user`` as it appears in key names), the token's ``exp``, its bucket (``tokens``,
``ts`` in ms) and its recent rejections; it expires with the connection. ``take`` is one Lua script: it
reads the user from that hash, refills both buckets from the time elapsed, and takes the message's cost
from both or from neither (then it counts a rejection in the connection's window and says how long until
the cost fits). One round trip per client message, atomic across concurrent Lambdas.

The user's bucket key (``ws:budget:user:<user>``) is built inside the script from the stored user id: the
caller learns the user from the very hash the script reads, so it cannot name that key in KEYS. That is
sound on a non-clustered Redis (the ElastiCache replication group of infra/template.yaml has one shard);
a cluster-mode Redis would need the two keys in one hash slot.

Redis unreachable: the budget does not switch off. Each container keeps its own buckets (and the
identities it registered) and decides alone, marked ``degraded``: a flood through one container is still
refused; across containers the limit is looser by the number of warm containers.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Unpack

import redis

from chalicelib.adapters.redis_support import DegradingRedisAdapter, RedisOptions, subject_key
from chalicelib.ports import BucketLimits, BudgetDecision, ConnectionIdentity, MessageBudgetLimits

# KEYS: the connection's hash. ARGV: now ms, cost, connection capacity, connection refill per ms, user
# capacity, user refill per ms, the user bucket key's prefix, rejection window ms, user bucket ttl ms.
# Returns {-1} for an unknown connection, {1, 0, 0, exp, sub} when taken, {0, wait ms, rejections, exp, sub}
# when refused (exp '' when the token's expiry is unknown; sub the user as the token names it).
_TAKE = """
local h = redis.call('HMGET', KEYS[1], 'user', 'exp', 'tokens', 'ts', 'rej', 'rej_since', 'sub')
if not h[1] then return {-1} end
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local function level(tokens, ts, capacity, rate)
  local t = tonumber(tokens)
  local since = tonumber(ts)
  if not t or not since then return capacity end
  return math.min(capacity, t + math.max(0, now - since) * rate)
end
local ccap, crate = tonumber(ARGV[3]), tonumber(ARGV[4])
local ucap, urate = tonumber(ARGV[5]), tonumber(ARGV[6])
local ukey = ARGV[7] .. h[1]
local u_h = redis.call('HMGET', ukey, 'tokens', 'ts')
local c = level(h[3], h[4], ccap, crate)
local u = level(u_h[1], u_h[2], ucap, urate)
local exp = h[2] or ''
local sub = h[7] or ''
if c >= cost and u >= cost then
  redis.call('HSET', KEYS[1], 'tokens', tostring(c - cost), 'ts', ARGV[1])
  redis.call('HSET', ukey, 'tokens', tostring(u - cost), 'ts', ARGV[1])
  redis.call('PEXPIRE', ukey, ARGV[9])
  return {1, 0, 0, exp, sub}
end
local wait = 0
if c < cost then wait = math.max(wait, (cost - c) / crate) end
if u < cost then wait = math.max(wait, (cost - u) / urate) end
local rej = tonumber(h[5]) or 0
if now - (tonumber(h[6]) or 0) >= tonumber(ARGV[8]) then
  rej = 0
  redis.call('HSET', KEYS[1], 'rej_since', ARGV[1])
end
rej = rej + 1
redis.call('HSET', KEYS[1], 'rej', rej)
return {0, math.ceil(wait), rej, exp, sub}
"""

# Identities a container remembers for its Redis-down fallback (a warm Lambda sees a bounded number).
_LOCAL_IDENTITIES = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: float

    def level(self, now: float, limits: BucketLimits) -> float:
        return min(limits.capacity, self.tokens + max(0.0, now - self.at) * limits.refill_per_second)


class _LocalBudget:
    """The same buckets in this container's memory (used while Redis is unreachable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._identities: OrderedDict[str, ConnectionIdentity] = OrderedDict()
        self._buckets: dict[str, _Bucket] = {}
        self._rejections: dict[str, tuple[float, int]] = {}

    def register(self, connection_id: str, identity: ConnectionIdentity) -> None:
        with self._lock:
            self._identities[connection_id] = identity
            self._identities.move_to_end(connection_id)
            while len(self._identities) > _LOCAL_IDENTITIES:
                gone, _ = self._identities.popitem(last=False)
                self._buckets.pop(f"c:{gone}", None)
                self._rejections.pop(gone, None)

    def take(self, connection_id: str, cost: int, now: float, limits: MessageBudgetLimits) -> BudgetDecision:
        conn, user = limits.per_connection, limits.per_user
        with self._lock:
            identity = self._identities.get(connection_id)
            if identity is None:
                return BudgetDecision(allowed=False, identity=None, degraded=True)
            c_bucket = self._buckets.setdefault(f"c:{connection_id}", _Bucket(conn.capacity, now))
            u_bucket = self._buckets.setdefault(f"u:{identity.user_id}", _Bucket(user.capacity, now))
            c, u = c_bucket.level(now, conn), u_bucket.level(now, user)
            if c >= cost and u >= cost:
                c_bucket.tokens, c_bucket.at = c - cost, now
                u_bucket.tokens, u_bucket.at = u - cost, now
                return BudgetDecision(allowed=True, identity=identity, degraded=True)
            wait = max(
                (cost - c) / conn.refill_per_second if c < cost else 0.0,
                (cost - u) / user.refill_per_second if u < cost else 0.0,
            )
            since, count = self._rejections.get(connection_id, (now, 0))
            if now - since >= limits.rejection_window_seconds:
                since, count = now, 0
            self._rejections[connection_id] = (since, count + 1)
            return BudgetDecision(
                allowed=False,
                identity=identity,
                retry_after_seconds=max(1, math.ceil(wait)),
                rejections=count + 1,
                degraded=True,
            )


class RedisMessageBudget(DegradingRedisAdapter):
    def __init__(self, client: redis.Redis, **options: Unpack[RedisOptions]) -> None:
        super().__init__(client, **options)
        self._take = client.register_script(_TAKE)
        self._local = _LocalBudget()

    def _connection_key(self, connection_id: str) -> str:
        return self._key(f"ws:budget:conn:{connection_id}")

    def register(self, connection_id: str, identity: ConnectionIdentity, *, ttl_seconds: int) -> None:
        self._local.register(connection_id, identity)
        fields: dict[str, str | int] = {"user": subject_key(identity.user_id), "sub": identity.user_id}
        if identity.token_expires_at is not None:
            fields["exp"] = identity.token_expires_at

        def write() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(self._connection_key(connection_id), mapping=fields)  # type: ignore[arg-type]
            pipe.expire(self._connection_key(connection_id), ttl_seconds)
            pipe.execute()

        self._guarded("register", write, None)

    def take(self, connection_id: str, cost: int, limits: MessageBudgetLimits) -> BudgetDecision:
        now = self._clock()
        per_connection, per_user = limits.per_connection, limits.per_user
        user_ttl_ms = int(per_user.capacity / per_user.refill_per_second * 1000) + 60_000
        result = self._guarded(
            "take",
            lambda: self._take(
                keys=[self._connection_key(connection_id)],
                args=[
                    int(now * 1000),
                    cost,
                    per_connection.capacity,
                    repr(per_connection.refill_per_second / 1000),
                    per_user.capacity,
                    repr(per_user.refill_per_second / 1000),
                    self._key("ws:budget:user:"),
                    limits.rejection_window_seconds * 1000,
                    user_ttl_ms,
                ],
            ),
            None,
        )
        if result is None:
            return self._local.take(connection_id, cost, now, limits)
        return self._decision(result)

    @staticmethod
    def _decision(result: list[object]) -> BudgetDecision:
        def text(value: object) -> str:
            return value.decode() if isinstance(value, bytes) else str(value)

        if int(text(result[0])) == -1:
            return BudgetDecision(allowed=False, identity=None)
        allowed, wait_ms, rejections, exp, sub = (text(value) for value in result)
        identity = ConnectionIdentity(user_id=sub, token_expires_at=int(exp) if exp else None)
        if int(allowed) == 1:
            return BudgetDecision(allowed=True, identity=identity)
        return BudgetDecision(
            allowed=False,
            identity=identity,
            retry_after_seconds=max(1, math.ceil(int(wait_ms) / 1000)),
            rejections=int(rejections),
        )
