"""Redis (ElastiCache) implementation of the Cache port.

Each key holds one JSON document: the value (any JSON value, nested as it is, never JSON in a string)
with its own freshness deadline, while the Redis TTL covers freshness plus the stale window: a value
stays readable as a stale copy after it stops being fresh. A read decodes that one document once.

The hot set (`hot:quotes`, a sorted set scored by last read time) records which quotes readers looked
at recently, so the quote refresh job can keep them fresh ahead of the next read.

Redis being unreachable degrades the service to uncached, with no hot set (see redis_support).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

import redis
from aws_lambda_powertools import Logger
from pydantic import JsonValue

from chalicelib.adapters.redis_support import REDIS_FAILURES as _REDIS_FAILURES
from chalicelib.adapters.redis_support import DegradingRedisAdapter, ScriptCall, redis_client, run_scripts
from chalicelib.ports import CacheEntry, KindCounters, LookupCount

logger = Logger(child=True)

# Hot set defaults (settings HOT_SET_MAX_SYMBOLS, HOT_SET_WINDOW_SECONDS override them).
DEFAULT_HOT_SET_MAX_SYMBOLS = 2000
DEFAULT_HOT_SET_WINDOW_SECONDS = 600.0

# Compare-and-delete: release the lock only if we still own it (it may have expired and been re-taken).
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisCache(DegradingRedisAdapter):
    def __init__(
        self,
        client: redis.Redis,
        *,
        key_prefix: str,
        retry_after_failure_seconds: float = 5.0,
        hot_set_max_symbols: int = DEFAULT_HOT_SET_MAX_SYMBOLS,
        hot_set_window_seconds: float = DEFAULT_HOT_SET_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(client, key_prefix=key_prefix, retry_after_failure_seconds=retry_after_failure_seconds)
        if hot_set_max_symbols < 1 or hot_set_window_seconds <= 0:
            raise ValueError("the hot set needs a cap of at least 1 symbol and a positive window")
        self._clock = clock
        self._hot_cap = hot_set_max_symbols
        self._hot_window = hot_set_window_seconds
        self._release_script = client.register_script(_RELEASE_LOCK)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str,
        socket_timeout_seconds: float,
        hot_set_max_symbols: int = DEFAULT_HOT_SET_MAX_SYMBOLS,
        hot_set_window_seconds: float = DEFAULT_HOT_SET_WINDOW_SECONDS,
    ) -> RedisCache:
        return cls(
            redis_client(url, socket_timeout_seconds=socket_timeout_seconds),
            key_prefix=key_prefix,
            hot_set_max_symbols=hot_set_max_symbols,
            hot_set_window_seconds=hot_set_window_seconds,
        )

    # --- values -----------------------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        self._settle_riders_alone()
        if not self.available:
            return None
        try:
            raw = self._client.get(self._key(key))
        except _REDIS_FAILURES as exc:
            self._failed("get", exc)
            return None
        return self._decode(key, raw)

    def _decode(self, key: str, raw: object) -> CacheEntry | None:
        if raw is None:
            return None
        try:
            envelope = json.loads(raw)  # type: ignore[arg-type]
            return CacheEntry(value=envelope["v"], stored_at=float(envelope["s"]), fresh_until=float(envelope["f"]))
        except (ValueError, KeyError, TypeError):
            # Written by an incompatible version: treat as a miss; the next write replaces it.
            logger.warning("discarding unreadable cache entry", extra={"key": key})
            return None

    def get_many(
        self, keys: Sequence[str], *, touch_hot: Sequence[str] = (), lookups: LookupCount | None = None
    ) -> dict[str, CacheEntry]:
        """One MGET for many keys (batch quotes); absent and unreadable keys are left out. With
        ``touch_hot``, the hot set is updated, and with ``lookups`` the lookup counter, in the same
        pipeline, which also carries the request's riders (its rate-limit hit): a cached read is one
        round trip in all."""
        if not self.available:
            self._settle_riders_alone()
            return {}
        if not (keys or touch_hot or lookups):
            return {}
        pipe, carried = self._pipeline_carrying_riders()
        if keys:
            pipe.mget([self._key(k) for k in keys])
        if touch_hot:
            self._queue_hot_touch(pipe, touch_hot)
        if lookups is not None and lookups.count > 0:
            pipe.hincrby(self._stats_key(), f"{lookups.kind}:lookups", lookups.count)
        replies = self._execute_carrying("mget", pipe, carried)
        if replies is None:
            return {}
        found: dict[str, CacheEntry] = {}
        if not keys:
            return found
        for key, raw in zip(keys, replies[0], strict=True):
            entry = self._decode(key, raw)
            if entry is not None:
                found[key] = entry
        return found

    # --- hot set: symbols readers looked at recently (refreshed ahead by the quote job) -----------

    def _hot_key(self) -> str:
        return self._key("hot:quotes")

    def _queue_hot_touch(self, pipe: redis.client.Pipeline, symbols: Sequence[str]) -> None:
        """Score = last read time. Trimming rides along: entries older than the window go by score,
        then the oldest beyond the cap go by rank. The set never holds more than cap + one call's
        symbols before trimming, so each call removes at most that many (bounded work per read). The
        key's own TTL is the window: a set nobody reads any more disappears by itself."""
        now = self._clock()
        key = self._hot_key()
        pipe.zadd(key, dict.fromkeys(symbols, now))
        pipe.zremrangebyscore(key, "-inf", f"({now - self._hot_window}")
        pipe.zremrangebyrank(key, 0, -(self._hot_cap + 1))
        pipe.pexpire(key, max(1, int(self._hot_window * 1000)))

    def forget_hot(self, symbols: Sequence[str]) -> None:
        self._settle_riders_alone()
        if not self.available or not symbols:
            return
        try:
            self._client.zrem(self._hot_key(), *symbols)
        except _REDIS_FAILURES as exc:
            self._failed("forget_hot", exc)

    def hot_symbols(self, limit: int) -> list[str]:
        """Most recently read first, within the window (entries past it may linger until the next
        touch trims them; they are filtered out here)."""
        if not self.available or limit <= 0:
            return []
        oldest = self._clock() - self._hot_window
        try:
            raw = self._client.zrevrangebyscore(self._hot_key(), "+inf", oldest, start=0, num=limit)
        except _REDIS_FAILURES as exc:
            self._failed("hot_symbols", exc)
            return []
        return [m.decode() if isinstance(m, bytes) else str(m) for m in raw]

    def set_many(self, values: Mapping[str, JsonValue], *, fresh_ttl_seconds: float, stale_ttl_seconds: float) -> None:
        """Many writes in one round trip (a pipeline, not a transaction: each key stands alone)."""
        self._settle_riders_alone()
        if not self.available or not values:
            return
        now = self._clock()
        expire_ms = max(1, int((fresh_ttl_seconds + stale_ttl_seconds) * 1000))
        pipe = self._client.pipeline(transaction=False)
        for key, value in values.items():
            pipe.set(self._key(key), _encode(value, now, fresh_ttl_seconds), px=expire_ms)
            # The write and its counter in one round trip: /cache/stats reads counters, never the keyspace.
            pipe.hincrby(self._stats_key(), f"{_write_kind(key)}:writes", 1)
        try:
            pipe.execute()
        except _REDIS_FAILURES as exc:
            self._failed("set", exc)

    def set(self, key: str, value: JsonValue, *, fresh_ttl_seconds: float, stale_ttl_seconds: float) -> None:
        self.set_many({key: value}, fresh_ttl_seconds=fresh_ttl_seconds, stale_ttl_seconds=stale_ttl_seconds)

    # --- stampede lock ----------------------------------------------------------------------------

    def acquire_lock(self, key: str, ttl_seconds: float) -> str | None:
        self._settle_riders_alone()
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

    def acquire_locks(self, keys: Sequence[str], ttl_seconds: float) -> dict[str, str | None]:
        self._settle_riders_alone()
        tokens = {key: uuid.uuid4().hex for key in keys}
        if not self.available or not keys:
            return dict(tokens)  # nothing to coordinate with; the caller goes upstream itself
        pipe = self._client.pipeline(transaction=False)
        for key, token in tokens.items():
            pipe.set(self._key("lock:" + key), token, nx=True, px=max(1, int(ttl_seconds * 1000)))
        try:
            acquired = pipe.execute()
        except _REDIS_FAILURES as exc:
            self._failed("lock", exc)
            return dict(tokens)
        return {key: token if ok else None for (key, token), ok in zip(tokens.items(), acquired, strict=True)}

    def release_locks(self, tokens: Mapping[str, str]) -> None:
        if not self.available or not tokens:
            return
        calls = [ScriptCall(self._release_script, [self._key("lock:" + key)], [token]) for key, token in tokens.items()]
        try:
            run_scripts(self._client, calls)  # one round trip (EVALSHA; a NOSCRIPT is loaded and retried)
        except _REDIS_FAILURES as exc:
            self._failed("unlock", exc)

    # --- hit/miss counters ------------------------------------------------------------------------

    def _stats_key(self) -> str:
        return self._key("stats:cache")

    # Fields of the stats hash, per kind: ``lookups`` (counted with the read) and ``missed`` (of those,
    # the misses), so a hit costs no write of its own; ``hits``/``misses`` are what versions before
    # them wrote (still added in, never written again); ``writes`` counts values stored.

    def record_lookup(self, kind: str, *, hit: bool) -> None:
        self._settle_riders_alone()
        if not self.available:
            return
        pipe = self._client.pipeline(transaction=False)
        pipe.hincrby(self._stats_key(), f"{kind}:lookups", 1)
        if not hit:
            pipe.hincrby(self._stats_key(), f"{kind}:missed", 1)
        try:
            pipe.execute()
        except _REDIS_FAILURES as exc:
            self._failed("stats", exc)

    def record_misses(self, kind: str, count: int) -> None:
        self._settle_riders_alone()
        if not self.available or count <= 0:
            return
        try:
            self._client.hincrby(self._stats_key(), f"{kind}:missed", count)
        except _REDIS_FAILURES as exc:
            self._failed("stats", exc)

    def lookup_counters(self) -> Mapping[str, KindCounters] | None:
        self._settle_riders_alone()
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
            counts.setdefault(kind, dict.fromkeys(("hits", "misses", "lookups", "missed", "writes"), 0))[what] = int(
                value
            )
        return {
            kind: KindCounters(
                hits=c["hits"] + max(0, c["lookups"] - c["missed"]),
                misses=c["misses"] + c["missed"],
                writes=c["writes"],
            )
            for kind, c in counts.items()
        }


def _encode(value: JsonValue, now: float, fresh_ttl_seconds: float) -> str:
    return json.dumps({"v": value, "s": now, "f": now + fresh_ttl_seconds}, separators=(",", ":"))


def _write_kind(key: str) -> str:
    """The data kind a cache key holds, named as lookups name it (market:indices → indices)."""
    family, _, rest = key.partition(":")
    return rest.split(":", 1)[0] if family == "market" and rest else family
