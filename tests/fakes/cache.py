"""An in-memory Cache: the same freshness envelope, stale window, hot set, locks and counters as
RedisCache, on an injected clock. ``down`` makes it behave as RedisCache does with Redis unreachable.

Runs through the Cache contract tests with RedisCache (tests/contract/test_redis_cache.py)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping, Sequence

from pydantic import JsonValue

from chalicelib.adapters.redis_cache import DEFAULT_HOT_SET_MAX_SYMBOLS, DEFAULT_HOT_SET_WINDOW_SECONDS
from chalicelib.ports import CacheEntry, KindCounters, LookupCount
from tests.fakes.clock import FakeClock


class InMemoryCache:
    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        hot_set_max_symbols: int = DEFAULT_HOT_SET_MAX_SYMBOLS,
        hot_set_window_seconds: float = DEFAULT_HOT_SET_WINDOW_SECONDS,
    ) -> None:
        if hot_set_max_symbols < 1 or hot_set_window_seconds <= 0:
            raise ValueError("the hot set needs a cap of at least 1 symbol and a positive window")
        self._clock = clock or FakeClock()
        self._hot_cap = hot_set_max_symbols
        self._hot_window = hot_set_window_seconds
        self._lock = threading.Lock()
        self._values: dict[str, tuple[CacheEntry, float]] = {}  # key → (entry, gone at)
        self._locks: dict[str, tuple[str, float]] = {}  # key → (token, expires at)
        self._hot: dict[str, float] = {}  # symbol → last read
        self._counters: dict[str, dict[str, int]] = {}
        self.down = False  # True: every operation degrades as with Redis unreachable
        self.reads = 0  # get/get_many calls (the service's round trips)

    @property
    def available(self) -> bool:
        return not self.down

    # --- values -----------------------------------------------------------------------------------

    def _live(self, key: str, now: float) -> CacheEntry | None:
        found = self._values.get(key)
        if found is None:
            return None
        entry, gone_at = found
        if now >= gone_at:
            del self._values[key]
            return None
        return entry

    def get(self, key: str) -> CacheEntry | None:
        if self.down:
            return None
        with self._lock:
            self.reads += 1
            return self._live(key, self._clock())

    def get_many(
        self, keys: Sequence[str], *, touch_hot: Sequence[str] = (), lookups: LookupCount | None = None
    ) -> dict[str, CacheEntry]:
        if self.down or not (keys or touch_hot or lookups):
            return {}
        now = self._clock()
        with self._lock:
            self.reads += 1
            found = {key: entry for key in keys if (entry := self._live(key, now)) is not None}
            if touch_hot:
                self._touch(touch_hot, now)
            if lookups is not None:
                self._count(lookups.kind, "hits", lookups.count)
        return found

    def set(self, key: str, value: JsonValue, *, fresh_ttl_seconds: float, stale_ttl_seconds: float) -> None:
        self.set_many({key: value}, fresh_ttl_seconds=fresh_ttl_seconds, stale_ttl_seconds=stale_ttl_seconds)

    def set_many(self, values: Mapping[str, JsonValue], *, fresh_ttl_seconds: float, stale_ttl_seconds: float) -> None:
        if self.down or not values:
            return
        now = self._clock()
        # Redis keeps a key at least 1 ms: the same floor here.
        gone_at = now + max(0.001, fresh_ttl_seconds + stale_ttl_seconds)
        with self._lock:
            for key, value in values.items():
                self._values[key] = (CacheEntry(value, now, now + fresh_ttl_seconds), gone_at)
                self._count(_write_kind(key), "writes")

    # --- hot set ----------------------------------------------------------------------------------

    def _touch(self, symbols: Sequence[str], now: float) -> None:
        for symbol in symbols:
            self._hot[symbol] = now
        oldest = now - self._hot_window
        self._hot = {s: at for s, at in self._hot.items() if at >= oldest}
        if len(self._hot) > self._hot_cap:
            ranked = sorted(self._hot.items(), key=lambda pair: (pair[1], pair[0]))
            self._hot = dict(ranked[len(ranked) - self._hot_cap :])

    def forget_hot(self, symbols: Sequence[str]) -> None:
        if self.down:
            return
        with self._lock:
            for symbol in symbols:
                self._hot.pop(symbol, None)

    def hot_symbols(self, limit: int) -> list[str]:
        if self.down or limit <= 0:
            return []
        oldest = self._clock() - self._hot_window
        with self._lock:
            live = [(at, s) for s, at in self._hot.items() if at >= oldest]
        return [s for _, s in sorted(live, reverse=True)[:limit]]

    # --- stampede lock ----------------------------------------------------------------------------

    def acquire_lock(self, key: str, ttl_seconds: float) -> str | None:
        token = uuid.uuid4().hex
        if self.down:
            return token
        now = self._clock()
        with self._lock:
            held = self._locks.get(key)
            if held is not None and now < held[1]:
                return None
            self._locks[key] = (token, now + max(0.001, ttl_seconds))
        return token

    def release_lock(self, key: str, token: str) -> None:
        if self.down:
            return
        with self._lock:
            held = self._locks.get(key)
            if held is not None and held[0] == token:
                del self._locks[key]

    def acquire_locks(self, keys: Sequence[str], ttl_seconds: float) -> dict[str, str | None]:
        return {key: self.acquire_lock(key, ttl_seconds) for key in keys}

    def release_locks(self, tokens: Mapping[str, str]) -> None:
        for key, token in tokens.items():
            self.release_lock(key, token)

    # --- counters ---------------------------------------------------------------------------------

    def _count(self, kind: str, what: str, by: int = 1) -> None:
        self._counters.setdefault(kind, {"hits": 0, "misses": 0, "writes": 0})[what] += by

    def record_lookup(self, kind: str, *, hit: bool) -> None:
        if self.down:
            return
        with self._lock:
            self._count(kind, "hits" if hit else "misses")

    def record_misses(self, kind: str, count: int) -> None:
        """Lookups counted with their read (as hits) that missed, as RedisCache keeps them."""
        if self.down or count <= 0:
            return
        with self._lock:
            self._count(kind, "hits", -count)
            self._count(kind, "misses", count)

    def lookup_counters(self) -> Mapping[str, KindCounters] | None:
        if self.down:
            return None
        with self._lock:
            return {kind: KindCounters(c["hits"], c["misses"], c["writes"]) for kind, c in self._counters.items()}


def _write_kind(key: str) -> str:
    """The data kind a key holds, named as lookups name it (market:indices → indices), as RedisCache does."""
    family, _, rest = key.partition(":")
    return rest.split(":", 1)[0] if family == "market" and rest else family
