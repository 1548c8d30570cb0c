"""The read-through cache policy, one for every data kind.

Which key a value lives under and how long it stays fresh is the caller's (a ``CacheKind``); what
happens on a lookup is decided here, once: a fresh copy is a hit; a symbol a vendor lately called
unknown is a 404 from the negative cache; otherwise one caller per key takes the miss lock and goes
upstream while the others wait for its result; a failure serves a stale copy when there is one.

Each key holds one document (see ``stored_document``): the payload with its provenance, nested in the
cache's own freshness wrapper, so a hit decodes one JSON document once and validates the payload once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from typing import TypeVar

from pydantic import BaseModel

from chalicelib import observability
from chalicelib.errors import NotFound, ServiceUnavailable
from chalicelib.models.served import Provenance, Served
from chalicelib.ports import Cache, LookupCount
from chalicelib.services.market_data.cached import (
    CacheKind,
    CacheTimings,
    Fetched,
    Many,
    decode,
    negative_key,
    negative_reason,
    stored_document,
    symbol_not_found,
)
from chalicelib.services.provider_chain import (
    DEADLINE_MARGIN_SECONDS,
    AllProvidersFailed,
    NoDataAnywhere,
    UnknownSymbol,
)

logger = observability.logger

P = TypeVar("P", bound=BaseModel)


@dataclasses.dataclass(frozen=True, slots=True)
class ReadThrough:
    """``fetch_timeout_seconds``: how long one upstream call may take (a waiter gives up in time to make
    it itself); ``replay_day``: in replay only, the replayed day stored with each value."""

    cache: Cache
    timings: CacheTimings
    _: dataclasses.KW_ONLY
    fetch_timeout_seconds: float
    clock: Callable[[], float]
    monotonic: Callable[[], float]
    sleep: Callable[[float], None]
    replay_day: Callable[[], date] | None = None

    # --- one key ----------------------------------------------------------------------------------

    def get(
        self,
        kind: CacheKind[P],
        key: str,
        fetch: Callable[[], tuple[P, str]],
        deadline: float | None,
        *,
        symbol: str | None = None,
    ) -> Served[P]:
        """Fresh cache hit → served; else one caller per key fetches (others wait for it); on failure
        a stale copy is served if any, else the error (404 for unknown symbols, 503 otherwise).
        ``symbol``: the instrument the key is about (negative cache, hot set)."""
        return self._get(kind, key, fetch, deadline, symbol=symbol, force=False)

    def refresh(
        self, kind: CacheKind[P], key: str, fetch: Callable[[], tuple[P, str]], deadline: float | None
    ) -> Served[P]:
        """Fetch and store whatever the cache holds (the refresh jobs); not a lookup to count."""
        return self._get(kind, key, fetch, deadline, symbol=None, force=True)

    def _get(
        self,
        kind: CacheKind[P],
        key: str,
        fetch: Callable[[], tuple[P, str]],
        deadline: float | None,
        *,
        symbol: str | None,
        force: bool,
    ) -> Served[P]:
        negative = negative_key(kind, symbol) if symbol is not None and self._negatives_on else None
        # The negative entry rides in the same read: a known-unknown symbol costs no extra round trip.
        keys = [key] if negative is None else [key, negative]
        # The lookup is counted in the read's own round trip (as a hit until a miss is recorded).
        entries = self.cache.get_many(
            keys,
            touch_hot=[symbol] if kind.hot and symbol and not force else (),
            lookups=None if force else LookupCount(kind.name),
        )
        now = self.clock()
        entry = entries.get(key)
        found = decode(kind, entry)
        if not force:
            if found is not None and entry is not None and entry.is_fresh(now):
                self._count_lookups(kind, hits=1)
                return found
            said = entries.get(negative) if negative is not None else None
            if symbol is not None and said is not None and said.is_fresh(now):
                self._count_lookups(kind, hits=1)
                if kind.hot:
                    self.cache.forget_hot([symbol])
                raise symbol_not_found(symbol, negative_reason(said))
            self._count_lookups(kind, misses=1)

        token = self.cache.acquire_lock(key, self.timings.lock_ttl_seconds)
        if token is None:
            # Another caller is fetching this key: wait for its result instead of stampeding upstream.
            filled = self._wait_for_fresh(kind, [key], deadline).get(key)
            if filled is not None:
                return filled
            logger.info("lock holder did not fill the cache in time; fetching", extra={"key": key})
        try:
            try:
                payload, source = fetch()
            except UnknownSymbol as exc:
                if symbol is not None:
                    self._remember_unknown(kind, {symbol: exc.reason})
                raise symbol_not_found(symbol or "?", exc.reason) from exc
            except NoDataAnywhere as exc:
                if symbol is None:  # nothing for a market-wide panel is an outage, not a missing item
                    raise AllProvidersFailed(exc.what, exc.outcome) from exc
                raise NotFound(f"no provider holds {exc.what} ({exc.outcome.summary()})") from exc
            except ServiceUnavailable as exc:
                if found is None:
                    raise
                logger.warning("serving stale copy", extra={"key": key, "error": exc.message})
                return self._stale(kind, found)
            return self._store(kind, {key: (payload, source)})[key]
        finally:
            if token is not None:
                self.cache.release_lock(key, token)

    # --- many keys of one kind: one MGET, one batched upstream call for the misses ------------------

    def get_many(
        self,
        kind: CacheKind[P],
        symbols: Sequence[str],
        fetch: Callable[[list[str]], Fetched[P]],
        deadline: float | None,
        *,
        force: bool = False,
    ) -> Many[P]:
        """Cached symbols from one MGET (negative entries in the same read); the misses this caller
        locks are fetched in one batched call, while misses another caller is already fetching are
        waited for (and fetched in a second call only if it does not fill them in time). ``force``
        (the refresh job): fetch even what is fresh, count no lookups and mark nothing as read."""
        result: Many[P] = Many()
        negatives = {s: negative_key(kind, s) for s in symbols} if self._negatives_on else {}
        keys = [kind.key(s) for s in symbols]
        entries = self.cache.get_many(
            [*keys, *negatives.values()],
            touch_hot=symbols if kind.hot and not force else (),
            lookups=None if force or not symbols else LookupCount(kind.name, len(symbols)),
        )
        now = self.clock()
        stale: dict[str, Served[P]] = {}
        missing: list[str] = []
        for symbol, key in zip(symbols, keys, strict=True):
            entry = entries.get(key)
            found = decode(kind, entry)
            if found is not None and entry is not None and entry.is_fresh(now) and not force:
                result.served[symbol] = found
                continue
            said = entries.get(negatives[symbol]) if negatives else None
            if said is not None and said.is_fresh(now):
                result.unknown[symbol] = negative_reason(said)
                continue
            if found is not None:
                stale[symbol] = found
            missing.append(symbol)
        if not force:
            self._count_lookups(kind, hits=len(symbols) - len(missing), misses=len(missing))
        if result.unknown and kind.hot:
            self.cache.forget_hot(list(result.unknown))
        if not missing:
            return result

        tokens = self.cache.acquire_locks([kind.key(s) for s in missing], self.timings.lock_ttl_seconds)
        held = {key: token for key, token in tokens.items() if token is not None}
        try:
            ours = [s for s in missing if kind.key(s) in held]
            if ours:
                self._fetch_many(kind, ours, fetch, stale, result)
            theirs = [s for s in missing if kind.key(s) not in held]
            if theirs:
                filled = self._wait_for_fresh(kind, [kind.key(s) for s in theirs], deadline)
                result.served.update({s: filled[kind.key(s)] for s in theirs if kind.key(s) in filled})
                late = [s for s in theirs if kind.key(s) not in filled]
                if late:
                    logger.info("lock holders did not fill the cache in time; fetching", extra={"count": len(late)})
                    self._fetch_many(kind, late, fetch, stale, result)
        finally:
            if held:
                self.cache.release_locks(held)
        return result

    def refresh_many(
        self,
        kind: CacheKind[P],
        symbols: Sequence[str],
        fetch: Callable[[list[str]], Fetched[P]],
        deadline: float | None,
    ) -> Many[P]:
        return self.get_many(kind, symbols, fetch, deadline, force=True)

    def _fetch_many(
        self,
        kind: CacheKind[P],
        symbols: list[str],
        fetch: Callable[[list[str]], Fetched[P]],
        stale: dict[str, Served[P]],
        result: Many[P],
    ) -> None:
        def stale_or_failed(symbol: str, reason: str) -> None:
            if symbol in stale:
                result.served[symbol] = self._stale(kind, stale[symbol])
            else:
                result.failed[symbol] = reason

        try:
            fetched = fetch(symbols)
        except ServiceUnavailable as exc:
            for symbol in symbols:
                stale_or_failed(symbol, exc.message)
            return
        for vendor, calls in fetched.upstream_calls.items():
            result.upstream_calls[vendor] = result.upstream_calls.get(vendor, 0) + calls
        stored = self._store(kind, {kind.key(s): value for s, value in fetched.found.items()})
        result.served.update({s: stored[kind.key(s)] for s in fetched.found})
        unknown = {s: reason for s, reason in fetched.unknown.items() if s not in fetched.found}
        if unknown:
            self._remember_unknown(kind, unknown)
            result.unknown.update(unknown)
        for symbol in symbols:
            if symbol not in fetched.found and symbol not in unknown:
                stale_or_failed(symbol, fetched.failure)

    # --- the pieces both share --------------------------------------------------------------------

    def _store(self, kind: CacheKind[P], values: dict[str, tuple[P, str]]) -> dict[str, Served[P]]:
        retrieved = datetime.now(UTC)
        day = self.replay_day() if self.replay_day is not None else None
        served = {
            key: Served(p, Provenance(source, retrieved, cached=False, stale=False, replay_day=day))
            for key, (p, source) in values.items()
        }
        if served:
            self.cache.set_many(
                {key: stored_document(s.payload, s.provenance.source, retrieved, day) for key, s in served.items()},
                fresh_ttl_seconds=kind.ttl,
                stale_ttl_seconds=self.timings.stale_ttl_seconds,
            )
        return served

    @staticmethod
    def _stale(kind: CacheKind[P], found: Served[P]) -> Served[P]:
        observability.count("StaleServed", dimensions={"kind": kind.name})
        return found.as_stale()

    def _wait_for_fresh(self, kind: CacheKind[P], keys: list[str], deadline: float | None) -> dict[str, Served[P]]:
        """Poll until every key is fresh or the wait is over; the fresh ones found (cached, not stale)."""
        give_up = self.monotonic() + self.timings.lock_wait_seconds
        if deadline is not None:
            give_up = min(give_up, deadline - DEADLINE_MARGIN_SECONDS - self.fetch_timeout_seconds)
        filled: dict[str, Served[P]] = {}
        while self.monotonic() < give_up and len(filled) < len(keys):
            self.sleep(self.timings.lock_poll_seconds)
            now = self.clock()
            for key, entry in self.cache.get_many([k for k in keys if k not in filled]).items():
                found = decode(kind, entry) if entry.is_fresh(now) else None
                if found is not None:
                    filled[key] = found
        return filled

    # --- the negative cache: "no such symbol", remembered briefly per data kind ---------------------

    @property
    def _negatives_on(self) -> bool:
        return self.timings.negative_ttl_seconds > 0

    def _remember_unknown(self, kind: CacheKind[P], reasons: dict[str, str | None]) -> None:
        """Repeating an unknown ticker then costs one provider call per negative-cache lifetime, not one
        per request; an unknown symbol also leaves the hot set (refreshing it would waste the job's bound)."""
        if kind.hot:
            self.cache.forget_hot(sorted(reasons))
        if not self._negatives_on:
            return
        self.cache.set_many(
            {negative_key(kind, symbol): reason or "" for symbol, reason in reasons.items()},
            fresh_ttl_seconds=self.timings.negative_ttl_seconds,
            stale_ttl_seconds=0,
        )

    # --- hit/miss counters (/cache/stats reads them) ------------------------------------------------

    def _count_lookups(self, kind: CacheKind[P], *, hits: int = 0, misses: int = 0) -> None:
        """The read counted its lookups already (as hits): only misses are written, and the metrics."""
        if misses:
            self.cache.record_misses(kind.name, misses)
            observability.count("CacheMiss", dimensions={"kind": kind.name}, value=misses)
        if hits:
            observability.count("CacheHit", dimensions={"kind": kind.name}, value=hits)
