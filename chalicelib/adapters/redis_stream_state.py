"""Fan-out memory in Redis: the last fingerprint published per topic, and delivery counters.

``claim_changes`` runs one Lua script per topic (compare and set), all of a round's topics pipelined into
one round trip, so two refresh runs racing on one topic send a
changed value once, not twice. Counters are per UTC minute (``ws:count:<name>:<epoch minute>``, kept two
hours) so "messages sent in the last hour" is one MGET of 60 keys per name.

Per connection, one hash ``ws:conn:<connection id>`` holds its data-message counter (``seq``) and the
last round sent per lane (``round:<lane>``). ``claim_sequences`` runs one Lua script per connection (check
the round, advance the counter by the number of frames, return the first number), all of a publish's
connections pipelined into one round trip. The hash expires with the connection (its TTL is refreshed on
every claim). ``allow_resync`` is a SET NX EX per connection.

A publish round's changed items are stored once (``ws:round:<key>``, one JSON document, kept a few
minutes) for the shard workers it dispatches, so an invocation carries only the round key and a shard.

Versioned copies of what the connection store holds (the topic registry, each shard's connections), one
mechanism for all: under ``ws:copy:{<name>}`` (``{}``: one cluster slot per copy), ``:version`` names the
current version, ``@<v>`` holds the document read from the store for version v (and when), ``+<v>`` the
changes writers recorded under v (a hash, member → value, the last write winning) and ``-<v>`` a count
of removals. A reader opens a new version (INCR) before reading the store, and a writer records its
change under the version current after its store writes; so a write made before the read is in the
document and one made after it is in that version's changes. ``read_copy`` (one Lua call) returns the
document with the previous version's changes and then the current one's, so a write the read missed
because an index lagged is applied as well; what a member's value means is the caller's
(chalicelib/services/store_copies.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence

import redis

from chalicelib.adapters.redis_support import DegradingRedisAdapter, ScriptCall, run_scripts
from chalicelib.ports import SEQ_DROP, SEQ_UNSEQUENCED, CopyChange, SequenceClaim, StoredCopy, StoredRound

COUNTER_NAMES = ("sent", "gone", "failed")
_FINGERPRINT_TTL_SECONDS = 24 * 3600
_COUNTER_TTL_SECONDS = 2 * 3600

# KEYS: the topic's fingerprint key. ARGV: fingerprint, ttl seconds. Returns 1 changed, 0 unchanged.
_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# KEYS: the connection's hash. ARGV: lane ('' = none: never dropped), round id, count, ttl seconds.
# Returns the first of `count` sequence numbers, or 'drop' when the lane already had this round or a newer one.
_SEQUENCE = """
if ARGV[1] ~= '' then
  local field = 'round:' .. ARGV[1]
  local last = redis.call('HGET', KEYS[1], field)
  if last and tonumber(ARGV[2]) <= tonumber(last) then return 'drop' end
  redis.call('HSET', KEYS[1], field, ARGV[2])
end
local count = tonumber(ARGV[3])
local seq = redis.call('HINCRBY', KEYS[1], 'seq', count)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return seq - count + 1
"""

# A copy's keys live this long after their last write: longer than any re-read interval, so a copy in
# use never expires under a reader (an expired copy is simply read again).
_COPY_TTL_SECONDS = 3600

# KEYS: version key, document key prefix, changes key prefix, removals key prefix.
# Returns {version, document or false, the changes recorded from the document's version - 1 on (flat, in
# version order: a later value wins), their removals}. While a reader has opened the current version and
# is still reading the store (or failed to), the previous version's document, with every change recorded
# since, serves: without it each reader in that window would find no copy and read the store itself.
_READ_COPY = """
local version = tonumber(redis.call('GET', KEYS[1]) or '0')
local base = version
local document = redis.call('GET', KEYS[2] .. base)
if not document then
  base = version - 1
  document = redis.call('GET', KEYS[2] .. base)
  if not document then return {version, false, {}, 0} end
end
local changes = {}
local removals = 0
for v = base - 1, version do
  for _, item in ipairs(redis.call('HGETALL', KEYS[3] .. v)) do table.insert(changes, item) end
  removals = removals + tonumber(redis.call('GET', KEYS[4] .. v) or '0')
end
return {version, document, changes, removals}
"""

# KEYS: version key, changes key prefix, removals key prefix. ARGV: ttl seconds, removals, then
# member, value pairs.
_RECORD_COPY_CHANGE = """
local version = redis.call('GET', KEYS[1]) or '0'
if #ARGV > 2 then
  local key = KEYS[2] .. version
  redis.call('HSET', key, unpack(ARGV, 3))
  redis.call('EXPIRE', key, ARGV[1])
end
if tonumber(ARGV[2]) > 0 then
  local key = KEYS[3] .. version
  redis.call('INCRBY', key, ARGV[2])
  redis.call('EXPIRE', key, ARGV[1])
end
return 1
"""


def _pairs(flat: Sequence[bytes]) -> dict[str, str]:
    """HGETALL's flat [field, value, ...] reply as a dict."""
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat) - 1, 2)}


class RedisStreamState(DegradingRedisAdapter):
    def __init__(self, client: redis.Redis, *, key_prefix: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(client, key_prefix=key_prefix, clock=clock)
        self._claim = client.register_script(_CLAIM)
        self._sequence = client.register_script(_SEQUENCE)
        self._read_copy = client.register_script(_READ_COPY)
        self._record_copy_change = client.register_script(_RECORD_COPY_CHANGE)

    def claim_changes(self, changes: Sequence[tuple[str, str]]) -> list[bool]:
        if not changes:
            return []

        def claim() -> list[bool]:
            calls = [
                ScriptCall(self._claim, [self._key(f"ws:last:{topic}")], [fingerprint, _FINGERPRINT_TTL_SECONDS])
                for topic, fingerprint in changes
            ]
            return [bool(result) for result in run_scripts(self._client, calls)]

        return self._guarded("claim_changes", claim, [True] * len(changes))

    def forget(self, topic: str) -> None:
        self._guarded("forget", lambda: self._client.delete(self._key(f"ws:last:{topic}")), None)

    def claim_sequences(self, claims: Sequence[SequenceClaim], *, ttl_seconds: int) -> list[int]:
        if not claims:
            return []

        def claim() -> list[int]:
            calls = [
                ScriptCall(
                    self._sequence,
                    [self._key(f"ws:conn:{claim.connection_id}")],
                    [claim.lane or "", claim.round_id, claim.count, ttl_seconds],
                )
                for claim in claims
            ]
            return [SEQ_DROP if result == b"drop" else int(result) for result in run_scripts(self._client, calls)]

        return self._guarded("claim_sequences", claim, [SEQ_UNSEQUENCED] * len(claims))

    def put_round(self, key: str, stored: StoredRound, *, ttl_seconds: int) -> bool:
        document = {
            "lane": stored.lane,
            "round_id": stored.round_id,
            "timestamp": stored.timestamp,
            # The items are our own JSON messages: kept as text, not re-parsed.
            "items": [[topic, payload.decode()] for topic, payload in stored.items],
        }

        def put() -> bool:
            self._client.set(self._key(f"ws:round:{key}"), json.dumps(document, separators=(",", ":")), ex=ttl_seconds)
            return True

        return self._guarded("put_round", put, False)

    def get_round(self, key: str) -> StoredRound | None:
        raw = self._guarded("get_round", lambda: self._client.get(self._key(f"ws:round:{key}")), None)
        if raw is None:
            return None
        document = json.loads(raw)
        return StoredRound(
            lane=str(document["lane"]),
            round_id=int(document["round_id"]),
            timestamp=float(document["timestamp"]),
            items=tuple((str(topic), str(payload).encode()) for topic, payload in document["items"]),
        )

    def allow_resync(self, connection_id: str, *, interval_seconds: int) -> bool:
        if interval_seconds <= 0:
            return True
        key = self._key(f"ws:resync:{connection_id}")
        return self._guarded(
            "allow_resync", lambda: bool(self._client.set(key, "1", nx=True, ex=interval_seconds)), True
        )

    def _minute(self) -> int:
        return int(self._clock() // 60)

    def add_counts(self, counts: Mapping[str, int]) -> None:
        if not any(counts.values()):
            return
        minute = self._minute()

        def add() -> None:
            pipe = self._client.pipeline(transaction=False)
            for name, value in counts.items():
                if value:
                    key = self._key(f"ws:count:{name}:{minute}")
                    pipe.incrby(key, value)
                    pipe.expire(key, _COUNTER_TTL_SECONDS)
            pipe.execute()

        self._guarded("add_counts", add, None)

    def counts_last_hour(self) -> Mapping[str, int] | None:
        minute = self._minute()
        minutes = range(minute - 59, minute + 1)

        def read() -> Mapping[str, int] | None:
            totals: dict[str, int] = {}
            for name in COUNTER_NAMES:
                values = self._client.mget([self._key(f"ws:count:{name}:{m}") for m in minutes])
                totals[name] = sum(int(v) for v in values if v is not None)
            return totals

        return self._guarded("counts_last_hour", read, None)

    def _copy_key(self, name: str, suffix: str) -> str:
        return self._key(f"ws:copy:{{{name}}}{suffix}")

    def read_copy(self, name: str) -> StoredCopy | None:
        keys = [self._copy_key(name, part) for part in (":version", "@", "+", "-")]
        found = self._guarded("read_copy", lambda: self._read_copy(keys=keys), None)
        if found is None:
            return None
        version, document, changes, removals = found
        if not document:
            return None
        header, _, body = document.decode().partition("\n")
        return StoredCopy(
            version=int(version), document=body, built_at=float(header), changes=_pairs(changes), removals=int(removals)
        )

    def open_copy(self, name: str) -> int | None:
        return self._guarded("open_copy", lambda: int(self._client.incr(self._copy_key(name, ":version"))), None)

    def store_copy(self, name: str, version: int, document: str, *, built_at: float) -> None:
        # The build time ahead of the caller's document, so the document is stored as given.
        self._guarded(
            "store_copy",
            lambda: self._client.set(
                self._copy_key(name, f"@{version}"), f"{built_at!r}\n{document}", ex=_COPY_TTL_SECONDS
            ),
            None,
        )

    def record_copy_changes(self, changes: Sequence[CopyChange]) -> None:
        wanted = [change for change in changes if change.members or change.removals]
        if not wanted:
            return

        def record() -> None:
            calls = [
                ScriptCall(
                    self._record_copy_change,
                    [self._copy_key(change.name, part) for part in (":version", "+", "-")],
                    [_COPY_TTL_SECONDS, change.removals, *(part for pair in change.members.items() for part in pair)],
                )
                for change in wanted
            ]
            run_scripts(self._client, calls)

        self._guarded("record_copy_changes", record, None)
