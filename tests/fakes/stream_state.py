"""An in-memory StreamState: compare-and-set fingerprints, per-connection sequence numbers with lanes,
resync allowances, stored rounds, per-minute counters and the versioned store copies, with the same
expiries as RedisStreamState on an injected clock. ``down`` makes it degrade as the Redis adapter does.

Runs through the StreamState contract tests with RedisStreamState (tests/contract/test_redis_stream_state.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from chalicelib.adapters.redis_stream_state import COUNTER_NAMES
from chalicelib.ports import SEQ_DROP, SEQ_UNSEQUENCED, CopyChange, SequenceClaim, StoredCopy, StoredRound
from tests.fakes.clock import FakeClock


@dataclass
class _Sequence:
    seq: int = 0
    rounds: dict[str, int] = field(default_factory=dict)  # lane → last round id claimed
    expires_at: float = 0.0


class InMemoryStreamState:
    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or FakeClock()
        self._lock = threading.Lock()
        self._fingerprints: dict[str, str] = {}
        self._sequences: dict[str, _Sequence] = {}
        self._resync: dict[str, float] = {}  # connection → allowed again at
        self._rounds: dict[str, tuple[StoredRound, float]] = {}  # key → (round, expires at)
        self._counts: dict[tuple[str, int], int] = {}  # (name, epoch minute) → count
        # Per copy name: its current version, and per version its document (with when), changes, removals.
        self._versions: dict[str, int] = {}
        self._documents: dict[tuple[str, int], tuple[str, float]] = {}
        self._changes: dict[tuple[str, int], dict[str, str]] = {}
        self._removals: dict[tuple[str, int], int] = {}
        self.down = False

    def claim_changes(self, changes: Sequence[tuple[str, str]]) -> list[bool]:
        if self.down:
            return [True] * len(changes)
        claimed: list[bool] = []
        with self._lock:
            for topic, fingerprint in changes:
                claimed.append(self._fingerprints.get(topic) != fingerprint)
                self._fingerprints[topic] = fingerprint
        return claimed

    def forget(self, topic: str) -> None:
        if self.down:
            return
        with self._lock:
            self._fingerprints.pop(topic, None)

    def claim_sequences(self, claims: Sequence[SequenceClaim], *, ttl_seconds: int) -> list[int]:
        if self.down:
            return [SEQ_UNSEQUENCED] * len(claims)
        now = self._clock()
        firsts: list[int] = []
        with self._lock:
            for claim in claims:
                state = self._sequences.get(claim.connection_id)
                if state is None or now >= state.expires_at:
                    state = self._sequences[claim.connection_id] = _Sequence()
                if claim.lane:
                    last = state.rounds.get(claim.lane)
                    if last is not None and claim.round_id <= last:
                        firsts.append(SEQ_DROP)
                        continue
                    state.rounds[claim.lane] = claim.round_id
                state.seq += claim.count
                state.expires_at = now + ttl_seconds
                firsts.append(state.seq - claim.count + 1)
        return firsts

    def put_round(self, key: str, stored: StoredRound, *, ttl_seconds: int) -> bool:
        if self.down:
            return False
        with self._lock:
            self._rounds[key] = (stored, self._clock() + ttl_seconds)
        return True

    def get_round(self, key: str) -> StoredRound | None:
        if self.down:
            return None
        with self._lock:
            found = self._rounds.get(key)
        if found is None or self._clock() >= found[1]:
            return None
        return found[0]

    def allow_resync(self, connection_id: str, *, interval_seconds: int) -> bool:
        if self.down or interval_seconds <= 0:
            return True
        now = self._clock()
        with self._lock:
            if self._resync.get(connection_id, 0.0) > now:
                return False
            self._resync[connection_id] = now + interval_seconds
        return True

    def add_counts(self, counts: Mapping[str, int]) -> None:
        if self.down:
            return
        minute = int(self._clock() // 60)
        with self._lock:
            for name, value in counts.items():
                if value:
                    self._counts[(name, minute)] = self._counts.get((name, minute), 0) + value

    def counts_last_hour(self) -> Mapping[str, int] | None:
        if self.down:
            return None
        minute = int(self._clock() // 60)
        with self._lock:
            return {
                name: sum(self._counts.get((name, m), 0) for m in range(minute - 59, minute + 1))
                for name in COUNTER_NAMES
            }

    def read_copy(self, name: str) -> StoredCopy | None:
        if self.down:
            return None
        with self._lock:
            version = self._versions.get(name, 0)
            # The current version's document; while its reader is still reading, the previous one's.
            base = version if (name, version) in self._documents else version - 1
            found = self._documents.get((name, base))
            if found is None:
                return None
            document, built_at = found
            changes: dict[str, str] = {}
            for v in range(base - 1, version + 1):
                changes.update(self._changes.get((name, v), {}))
            removals = sum(self._removals.get((name, v), 0) for v in range(base - 1, version + 1))
            return StoredCopy(version, document, built_at, changes, removals)

    def open_copy(self, name: str) -> int | None:
        if self.down:
            return None
        with self._lock:
            self._versions[name] = self._versions.get(name, 0) + 1
            return self._versions[name]

    def store_copy(self, name: str, version: int, document: str, *, built_at: float) -> None:
        if self.down:
            return
        with self._lock:
            self._documents[(name, version)] = (document, built_at)

    def record_copy_changes(self, changes: Sequence[CopyChange]) -> None:
        if self.down:
            return
        with self._lock:
            for change in changes:
                key = (change.name, self._versions.get(change.name, 0))
                self._changes.setdefault(key, {}).update(change.members)
                if change.removals:
                    self._removals[key] = self._removals.get(key, 0) + change.removals
