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

The topic registry's copy: ``ws:registry:version`` names the current version; ``ws:registry@<v>`` holds
the registry as read for version v (and when), ``ws:registry+<v>`` the (shard, topic) pairs subscribes
added under v (a set, ``<shard>|<topic>``). A reader opens a new version (INCR) before reading the
registry, and a subscribe records its pairs under the version current after its DynamoDB writes; so a
pair written before the read is in the snapshot and one written after it is in that version's
additions, and ``registry_copy`` (one Lua call) returns their union. Removals are not recorded: the
copy may name pairs since removed until the next read (a worker invocation that finds nobody to send to);
they are counted (``ws:registry-<v>``) so that a copy nothing was removed from is not read again early.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence

import redis

from chalicelib.adapters.redis_support import DegradingRedisAdapter
from chalicelib.ports import SEQ_DROP, SEQ_UNSEQUENCED, RegistryCopy, SequenceClaim, StoredRound, TopicRegistry

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

# The registry copy's keys live this long after their last write: longer than any rebuild interval, so a
# copy in use never expires under a reader (an expired copy is simply read again).
_REGISTRY_COPY_TTL_SECONDS = 3600

# KEYS: version key, snapshot key prefix, additions key prefix, removals key prefix.
# Returns {version, snapshot or false, additions, removals}.
_REGISTRY_COPY = """
local version = redis.call('GET', KEYS[1]) or '0'
local snapshot = redis.call('GET', KEYS[2] .. version)
if not snapshot then return {version, false, {}, 0} end
local removals = tonumber(redis.call('GET', KEYS[4] .. version) or '0')
return {version, snapshot, redis.call('SMEMBERS', KEYS[3] .. version), removals}
"""

# KEYS: version key, removals key prefix. ARGV: ttl seconds.
_REGISTRY_REMOVAL = """
local key = KEYS[2] .. (redis.call('GET', KEYS[1]) or '0')
redis.call('INCR', key)
redis.call('EXPIRE', key, ARGV[1])
return 1
"""

# KEYS: version key, additions key prefix. ARGV: ttl seconds, members ("<shard>|<topic>").
_REGISTRY_ADD = """
local key = KEYS[2] .. (redis.call('GET', KEYS[1]) or '0')
redis.call('SADD', key, unpack(ARGV, 2))
redis.call('EXPIRE', key, ARGV[1])
return 1
"""


class RedisStreamState(DegradingRedisAdapter):
    def __init__(self, client: redis.Redis, *, key_prefix: str, clock: Callable[[], float] = time.time) -> None:
        super().__init__(client, key_prefix=key_prefix, clock=clock)
        self._claim = client.register_script(_CLAIM)
        self._sequence = client.register_script(_SEQUENCE)
        self._registry_copy = client.register_script(_REGISTRY_COPY)
        self._registry_add = client.register_script(_REGISTRY_ADD)
        self._registry_removal = client.register_script(_REGISTRY_REMOVAL)

    def claim_changes(self, changes: Sequence[tuple[str, str]]) -> list[bool]:
        if not changes:
            return []

        def claim() -> list[bool]:
            pipe = self._client.pipeline(transaction=False)
            for topic, fingerprint in changes:
                self._claim(
                    keys=[self._key(f"ws:last:{topic}")], args=[fingerprint, _FINGERPRINT_TTL_SECONDS], client=pipe
                )
            return [bool(result) for result in pipe.execute()]

        return self._guarded("claim_changes", claim, [True] * len(changes))

    def forget(self, topic: str) -> None:
        self._guarded("forget", lambda: self._client.delete(self._key(f"ws:last:{topic}")), None)

    def claim_sequences(self, claims: Sequence[SequenceClaim], *, ttl_seconds: int) -> list[int]:
        if not claims:
            return []

        def claim() -> list[int]:
            pipe = self._client.pipeline(transaction=False)
            for claim in claims:
                self._sequence(
                    keys=[self._key(f"ws:conn:{claim.connection_id}")],
                    args=[claim.lane or "", claim.round_id, claim.count, ttl_seconds],
                    client=pipe,
                )
            return [SEQ_DROP if result == b"drop" else int(result) for result in pipe.execute()]

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

    def _registry_keys(self) -> tuple[str, str, str, str]:
        return (
            self._key("ws:registry:version"),
            self._key("ws:registry@"),
            self._key("ws:registry+"),
            self._key("ws:registry-"),
        )

    def registry_copy(self) -> RegistryCopy | None:
        keys = list(self._registry_keys())
        found = self._guarded("registry_copy", lambda: self._registry_copy(keys=keys), None)
        if found is None:
            return None
        version, snapshot, additions, removals = found
        if not snapshot:
            return None
        document = json.loads(snapshot)
        counts: dict[int, dict[str, int]] = {
            int(shard): dict(by_topic) for shard, by_topic in document["counts"].items()
        }
        for member in additions:
            shard, _, topic = member.decode().partition("|")
            by_topic = counts.setdefault(int(shard), {})
            by_topic[topic] = max(by_topic.get(topic, 0), 1)
        return RegistryCopy(int(version), TopicRegistry(counts), float(document["built_at"]), int(removals))

    def start_registry_copy(self) -> int | None:
        return self._guarded("start_registry_copy", lambda: int(self._client.incr(self._registry_keys()[0])), None)

    def store_registry_copy(self, version: int, registry: TopicRegistry, *, built_at: float) -> None:
        document = {"built_at": built_at, "counts": {str(shard): dict(c) for shard, c in registry.counts.items()}}
        self._guarded(
            "store_registry_copy",
            lambda: self._client.set(
                f"{self._registry_keys()[1]}{version}",
                json.dumps(document, separators=(",", ":")),
                ex=_REGISTRY_COPY_TTL_SECONDS,
            ),
            None,
        )

    def add_to_registry_copy(self, pairs: Sequence[tuple[int, str]]) -> None:
        if not pairs:
            return
        version_key, _, additions_prefix, _ = self._registry_keys()
        self._guarded(
            "add_to_registry_copy",
            lambda: self._registry_add(
                keys=[version_key, additions_prefix],
                args=[_REGISTRY_COPY_TTL_SECONDS, *(f"{shard}|{topic}" for shard, topic in pairs)],
            ),
            None,
        )

    def note_registry_removal(self) -> None:
        version_key, _, _, removals_prefix = self._registry_keys()
        self._guarded(
            "note_registry_removal",
            lambda: self._registry_removal(keys=[version_key, removals_prefix], args=[_REGISTRY_COPY_TTL_SECONDS]),
            None,
        )
