"""Redis (ElastiCache) implementation of the Cache port.

Values are stored in an envelope that carries their own freshness deadline, while the Redis TTL covers
freshness plus the stale window: a value stays readable as a stale copy after it stops being fresh.

Redis being unreachable must degrade the service, not fail it: every operation catches Redis errors,
and after one failure the adapter stops trying for a short back-off so a request does not pay a socket
timeout per cache call.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping

import redis
from aws_lambda_powertools import Logger

from chalicelib.ports import CacheEntry, KindCounters

logger = Logger(child=True)

# Compare-and-delete: release the lock only if we still own it (it may have expired and been re-taken).
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_REDIS_FAILURES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class RedisCache:
    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str,
        retry_after_failure_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._retry_after_failure = retry_after_failure_seconds
        self._clock = clock
        self._down_until = 0.0
        self._release_script = client.register_script(_RELEASE_LOCK)

    @classmethod
    def from_url(cls, url: str, *, key_prefix: str, socket_timeout_seconds: float) -> RedisCache:
        client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout_seconds,
            socket_connect_timeout=socket_timeout_seconds,
            health_check_interval=30,
            # Our own back-off handles outages; redis-py's retries would multiply the socket timeout.
            retry_on_timeout=False,
        )
        return cls(client, key_prefix=key_prefix)

    # --- availability -----------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, operation: str, exc: Exception) -> None:
        if self.available:
            logger.warning(
                "redis unreachable; serving uncached",
                extra={"operation": operation, "error": type(exc).__name__, "detail": str(exc)[:200]},
            )
        self._down_until = time.monotonic() + self._retry_after_failure

    def _key(self, key: str) -> str:
        return self._prefix + key

    # --- values -----------------------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        if not self.available:
            return None
        try:
            raw = self._client.get(self._key(key))
        except _REDIS_FAILURES as exc:
            self._failed("get", exc)
            return None
        if raw is None:
            return None
        try:
            envelope = json.loads(raw)
            return CacheEntry(value=envelope["v"], stored_at=float(envelope["s"]), fresh_until=float(envelope["f"]))
        except (ValueError, KeyError, TypeError):
            # Written by an incompatible version: treat as a miss; the next write replaces it.
            logger.warning("discarding unreadable cache entry", extra={"key": key})
            return None

    def set(self, key: str, value: str, *, fresh_ttl_seconds: float, stale_ttl_seconds: float) -> None:
        if not self.available:
            return
        now = self._clock()
        envelope = json.dumps({"v": value, "s": now, "f": now + fresh_ttl_seconds}, separators=(",", ":"))
        expire_ms = max(1, int((fresh_ttl_seconds + stale_ttl_seconds) * 1000))
        try:
            self._client.set(self._key(key), envelope, px=expire_ms)
        except _REDIS_FAILURES as exc:
            self._failed("set", exc)

    # --- stampede lock ----------------------------------------------------------------------------

    def acquire_lock(self, key: str, ttl_seconds: float) -> str | None:
        token = uuid.uuid4().hex
        if not self.available:
            return token  # nothing to coordinate with; the caller goes upstream itself
        try:
            acquired = self._client.set(self._key("lock:" + key), token, nx=True, px=max(1, int(ttl_seconds * 1000)))
        except _REDIS_FAILURES as exc:
            self._failed("lock", exc)
            return token
        return token if acquired else None

    def release_lock(self, key: str, token: str) -> None:
        if not self.available:
            return
        try:
            self._release_script(keys=[self._key("lock:" + key)], args=[token])
        except _REDIS_FAILURES as exc:
            self._failed("unlock", exc)

    # --- hit/miss counters ------------------------------------------------------------------------

    def _stats_key(self) -> str:
        return self._key("stats:cache")

    def record_lookup(self, kind: str, *, hit: bool) -> None:
        if not self.available:
            return
        try:
            self._client.hincrby(self._stats_key(), f"{kind}:{'hits' if hit else 'misses'}", 1)
        except _REDIS_FAILURES as exc:
            self._failed("stats", exc)

    def lookup_counters(self) -> Mapping[str, KindCounters] | None:
        if not self.available:
            return None
        try:
            raw: dict[bytes, bytes] = self._client.hgetall(self._stats_key())  # type: ignore[assignment]
        except _REDIS_FAILURES as exc:
            self._failed("stats", exc)
            return None
        counts: dict[str, dict[str, int]] = {}
        for field, value in raw.items():
            kind, _, what = field.decode().rpartition(":")
            counts.setdefault(kind, {"hits": 0, "misses": 0})[what] = int(value)
        return {kind: KindCounters(hits=c["hits"], misses=c["misses"]) for kind, c in counts.items()}
