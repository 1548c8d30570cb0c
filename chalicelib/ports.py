"""The boundaries between services and the outside world, one Protocol each.

Services depend on these; adapters implement them; tests run fakes and real adapters through the
same contract tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from pydantic import JsonValue

from chalicelib.models.market import (
    CompanyProfile,
    DataKind,
    HistoricalData,
    Interval,
    MoverType,
    NewsArticle,
    Period,
    Quote,
    SearchResult,
)


@dataclass(frozen=True)
class CacheEntry:
    """A cached value with its own freshness, so a stale copy can outlive its TTL (stale-if-error).
    ``value`` is any JSON value, stored nested in the entry's one JSON document (never JSON in a string),
    so a hit decodes one document once."""

    value: JsonValue
    stored_at: float
    fresh_until: float

    def is_fresh(self, now: float) -> bool:
        return now < self.fresh_until


@dataclass(frozen=True)
class KindCounters:
    hits: int
    misses: int
    writes: int = 0  # values written (fetched and stored) for this kind


class Cache(Protocol):
    """A TTL cache shared by every Lambda (Redis in AWS). Never raises for an unreachable backend:
    reads miss, writes are dropped, and ``available`` turns false, so the service degrades to uncached."""

    @property
    def available(self) -> bool: ...

    def get(self, key: str) -> CacheEntry | None: ...

    def get_many(self, keys: Sequence[str], *, touch_hot: Sequence[str] = ()) -> dict[str, CacheEntry]:
        """The entries found, keyed by key. ``touch_hot`` symbols are marked as read now in the hot set
        (what the quote refresh keeps fresh ahead of readers), in the same round trip as the read."""
        ...

    def forget_hot(self, symbols: Sequence[str]) -> None:
        """Drop symbols from the hot set (they turned out unknown: refreshing them would waste the
        job's bound on names no vendor quotes)."""
        ...

    def hot_symbols(self, limit: int) -> list[str]:
        """Symbols read within the hot-set window, most recently read first, at most ``limit``
        ([] when the backend is down: the refresh then covers subscribed and popular symbols only)."""
        ...

    def set(self, key: str, value: JsonValue, *, fresh_ttl_seconds: float, stale_ttl_seconds: float) -> None: ...

    def set_many(
        self, values: Mapping[str, JsonValue], *, fresh_ttl_seconds: float, stale_ttl_seconds: float
    ) -> None: ...

    def acquire_lock(self, key: str, ttl_seconds: float) -> str | None:
        """A token when the caller now holds the lock (or the backend is down: nothing to coordinate);
        None when another caller holds it."""
        ...

    def release_lock(self, key: str, token: str) -> None: ...

    def acquire_locks(self, keys: Sequence[str], ttl_seconds: float) -> dict[str, str | None]:
        """``acquire_lock`` for many keys in one round trip (a batch's misses): key → token, or None
        where another caller holds it."""
        ...

    def release_locks(self, tokens: Mapping[str, str]) -> None:
        """``release_lock`` for many keys (key → token) in one round trip."""
        ...

    def record_lookup(self, kind: str, *, hit: bool) -> None: ...

    def lookup_counters(self) -> Mapping[str, KindCounters] | None:
        """Hits, misses and writes per data kind since the counters began (one counter read, never a
        keyspace scan); None when the backend is down."""
        ...


class MarketDataProvider(Protocol):
    """A market-data vendor. Every method makes at most one upstream HTTP request (so the chain can take
    exactly one unit of the vendor's quota per call) and raises a ProviderError subclass when the vendor
    cannot answer; a method outside ``capabilities`` raises ProviderUnsupported."""

    @property
    def name(self) -> str:
        """The label every payload it serves carries in ``source`` (the vendor, or ``replay``)."""
        ...

    @property
    def vendor(self) -> str:
        """The vendor this adapter talks to (yahoo, fmp, alpha_vantage, tiingo): keys its quota and breaker."""
        ...

    @property
    def capabilities(self) -> frozenset[DataKind]: ...

    @property
    def max_symbols_per_quote_call(self) -> int:
        """How many symbols one quote request may carry (1 for vendors without a batch quote)."""
        ...

    def get_quotes(self, symbols: Sequence[str], *, timeout_seconds: float) -> dict[str, Quote]:
        """Quotes for the symbols the vendor knows, keyed by symbol; unknown symbols are absent."""
        ...

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, timeout_seconds: float
    ) -> HistoricalData:
        """Bars oldest first. Unknown symbol: ProviderSymbolNotFound; nothing in range: ProviderNoData."""
        ...

    def get_profile(self, symbol: str, *, timeout_seconds: float) -> CompanyProfile: ...

    def search(self, query: str, limit: int, *, timeout_seconds: float) -> list[SearchResult]: ...

    def get_news(self, symbol: str, limit: int, *, timeout_seconds: float) -> list[NewsArticle]: ...

    def get_movers(self, mover_type: MoverType, limit: int, *, timeout_seconds: float) -> list[Quote]: ...


# --- shared quotas, per-user rate limits and circuit breakers (Redis in AWS) ----------------------


@dataclass(frozen=True)
class QuotaLimits:
    """A provider's shared allowance; 0 means no limit for that window."""

    per_minute: int
    per_day: int


@dataclass(frozen=True)
class QuotaDecision:
    granted: bool
    exhausted_window: str | None = None  # "minute" or "day" when refused
    retry_after_seconds: int = 0
    degraded: bool = False  # granted without coordination because the backend is down
    remaining: int | None = None  # units left in the tighter window after this take (None: unlimited/unknown)


@dataclass(frozen=True)
class QuotaUsage:
    minute_used: int
    day_used: int
    minute_resets_in_seconds: int
    day_resets_in_seconds: int


class Quotas(Protocol):
    def try_take(self, vendor: str, limits: QuotaLimits) -> QuotaDecision:
        """Take one unit from both windows atomically, or nothing at all when either is exhausted."""
        ...

    def usage(self, vendor: str) -> QuotaUsage | None: ...


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


class RateLimiter(Protocol):
    def hit(self, subject: str, limit_per_minute: int, *, units: int = 1) -> RateLimitDecision:
        """Add ``units`` to the subject's per-minute budget; never allows everything when the shared
        store is down (a per-container limiter takes over)."""
        ...


@dataclass(frozen=True)
class BucketLimits:
    """A token bucket: holds at most ``capacity`` units (the burst) and refills ``refill_per_second``."""

    capacity: int
    refill_per_second: float


@dataclass(frozen=True)
class ConnectionIdentity:
    """Who holds a WebSocket connection, and until when its token is valid (epoch seconds; None: unknown)."""

    user_id: str
    token_expires_at: int | None = None


@dataclass(frozen=True)
class BudgetDecision:
    """The outcome of taking a client message's cost from its connection's and its user's buckets.

    ``identity`` None: the budget does not know the connection (never registered, or its state was lost);
    nothing was taken, the caller registers it and asks again. ``rejections``: the connection's refusals
    within the rejection window, this one included (0 when allowed)."""

    allowed: bool
    identity: ConnectionIdentity | None
    retry_after_seconds: int = 0
    rejections: int = 0
    degraded: bool = False  # decided by this container alone because the shared backend is down


class MessageBudget(Protocol):
    """Token buckets for WebSocket client messages, per connection and per user (Redis in AWS)."""

    def register(self, connection_id: str, identity: ConnectionIdentity, *, ttl_seconds: int) -> None:
        """Remember who holds the connection (at $connect), with full buckets."""
        ...

    def take(
        self,
        connection_id: str,
        cost: int,
        *,
        per_connection: BucketLimits,
        per_user: BucketLimits,
        rejection_window_seconds: int,
    ) -> BudgetDecision:
        """Atomically take ``cost`` from both buckets, or nothing when either lacks it (then count a
        rejection). Never raises for an unreachable backend: each container then keeps its own buckets,
        so a flood is still refused (per container) rather than let through."""
        ...


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerStatus:
    state: BreakerState
    consecutive_failures: int
    open_until: float | None
    last_error: str | None
    last_error_at: float | None


class CircuitBreaker(Protocol):
    def allow(self, vendor: str) -> bool:
        """Closed: yes. Open: no until the cool-down ends; then one caller at a time gets a probe."""
        ...

    def record_success(self, vendor: str) -> BreakerState | None:
        """Close the breaker; returns the previous state when it changed."""
        ...

    def record_failure(self, vendor: str, error: str) -> BreakerState | None:
        """Count a failure; returns the new state when it changed (opened)."""
        ...

    def status(self, vendor: str) -> BreakerStatus | None: ...


# --- real-time streaming: WebSocket connections, subscriptions, delivery (DynamoDB, API Gateway) ----


def shard_for(key: str, count: int) -> int:
    """A stable bucket 0..count-1 for ``key`` (a connection id → its fan-out shard): the same in every
    process and Python version, unlike ``hash()``, which is salted per process."""
    if count < 1:
        raise ValueError("count must be at least 1")
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class ConnectionRecord:
    """One open API Gateway WebSocket connection of one user."""

    connection_id: str
    user_id: str
    connected_at: datetime
    expires_at: int  # epoch seconds; DynamoDB's TTL attribute (deletes late: readers filter on it)
    source_ip: str | None = None
    user_agent: str | None = None
    topics: frozenset[str] = frozenset()  # what it subscribes to (kept on the connection item)
    message_format: str = "spec"  # chalicelib.models.streaming.StreamFormat, chosen at $connect
    shard: int = 0  # its fan-out shard, fixed at $connect (services.streaming.shard_for)
    token_expires_at: int | None = None  # the $connect token's `exp` (epoch seconds): closed after it


@dataclass(frozen=True)
class StreamingStats:
    open_connections: int
    distinct_users: int
    subscribers_by_topic: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicRegistry:
    """Subscriber counts per shard and topic, as the registry holds them (only counts above zero)."""

    counts: Mapping[int, Mapping[str, int]] = field(default_factory=dict)  # shard → topic → subscribers

    def topics(self) -> list[str]:
        """Every topic with a subscriber in some shard, sorted."""
        return sorted({topic for by_topic in self.counts.values() for topic in by_topic})

    def shards_for(self, topics: Iterable[str]) -> list[int]:
        """The shards holding a subscriber of any of these topics (where a round must be dispatched)."""
        wanted = set(topics)
        return sorted(shard for shard, by_topic in self.counts.items() if wanted.intersection(by_topic))

    def totals(self) -> dict[str, int]:
        """Subscribers per topic over all shards."""
        totals: dict[str, int] = {}
        for by_topic in self.counts.values():
            for topic, count in by_topic.items():
                totals[topic] = totals.get(topic, 0) + count
        return totals


@dataclass(frozen=True)
class RegistryCopy:
    """A copy of the topic registry kept beside the stream state: as read at ``built_at`` plus every pair
    added since (a superset: pairs removed since are still in it until the next read)."""

    version: int
    registry: TopicRegistry
    built_at: float


@dataclass(frozen=True)
class RegistryRepair:
    """What ``repair_registry`` changed: counters rewritten to the recount, and rewrites skipped because
    the counter moved while the recount ran (the next repair settles those)."""

    shards: int = 0
    topic_counts_fixed: int = 0
    counters_fixed: int = 0
    skipped: int = 0


class ConnectionStore(Protocol):
    """Connections, their subscriptions, the topic registry and the per-user connection slots (three
    DynamoDB tables in AWS).

    A topic is ``quote:<SYMBOL>`` or ``channel:<name>`` (chalicelib.models.streaming.topic_for_*).
    Every read of connections and subscriptions filters out items whose ``expires_at`` has passed,
    because DynamoDB's TTL deletes late (and moto never does). Nothing on a hot path Scans: fan-out reads
    are Queries on the topic or on the connection's shard, and the registry answers which topics have
    subscribers. The registry's counts follow every subscribe, unsubscribe and removal (never below
    zero); ``repair_registry`` recounts them from the connections."""

    def add_connection(self, record: ConnectionRecord, *, max_per_user: int | None = None) -> bool:
        """Store the connection in ``record.shard``; False (and nothing stored) when its user already
        holds ``max_per_user`` live connections. The cap holds under concurrent connects of one user
        (a conditional write, not a count then a put)."""
        ...

    def get_connection(self, connection_id: str, *, now: float) -> ConnectionRecord | None: ...

    def connections_of_user(self, user_id: str, *, now: float) -> list[ConnectionRecord]:
        """One Query on the by-user index."""
        ...

    def remove_connection(self, connection_id: str) -> int:
        """Delete the connection and every subscription of it, and release its registry counts and user
        slot; returns how many subscriptions went. Idempotent: only the call that deleted the item
        releases anything, so a $disconnect racing a 410 cleanup counts down once."""
        ...

    def connections_in_shard(self, shard: int, *, now: float) -> Iterator[ConnectionRecord]:
        """Every live connection of the shard with its topic set: paged Queries on the by-shard index
        (eventually consistent: a connection made a moment ago may be missing)."""
        ...

    def add_subscriptions(self, connection_id: str, topics: Sequence[str], *, expires_at: int) -> list[str] | None:
        """Subscribe; returns the connection's whole topic set afterwards, or None for an unknown connection."""
        ...

    def remove_subscriptions(self, connection_id: str, topics: Sequence[str]) -> list[str] | None:
        """Unsubscribe; returns the remaining topic set, or None for an unknown connection."""
        ...

    def topics_of(self, connection_id: str, *, now: float) -> list[str]:
        """What one connection subscribes to (one consistent read of its record; [] when expired)."""
        ...

    def subscribers(self, topic: str, *, now: float) -> list[str]:
        """Connection ids subscribed to ``topic``: one (paginated) Query on the table's partition key."""
        ...

    def subscribed_topics(self) -> list[str]:
        """Every topic with at least one subscriber, sorted (what the refresh jobs refresh): the
        registry, one Query per shard."""
        ...

    def topic_registry(self) -> TopicRegistry:
        """Subscriber counts per shard and topic (one Query per shard, no Scan)."""
        ...

    def repair_registry(self, *, now: float) -> RegistryRepair:
        """Recount the registry from the live connections of each shard (paged Queries per shard) and
        rewrite the counters that drifted (a process that died between writes, a race the conditional
        decrement refused). Run by the daily cleanup, after ``delete_expired``."""
        ...

    def delete_expired(self, *, now: float) -> tuple[int, int]:
        """Remove connections and subscriptions past their expiry (DynamoDB's TTL deletes late), and
        subscriptions whose connection no longer exists; returns (connections, subscriptions) removed."""
        ...

    def stats(self, *, top: int) -> StreamingStats:
        """Counts for /ws/stats from the registry's counters (no Scan). A connection whose $disconnect
        never came counts until the cleanup removes it."""
        ...


class DeliveryStatus(StrEnum):
    SENT = "sent"
    GONE = "gone"  # 410 GoneException: the client left; the caller removes the connection
    FAILED = "failed"  # still failing after retries


class Broadcaster(Protocol):
    """Posts messages to WebSocket clients (API Gateway management API in AWS)."""

    def send(self, connection_id: str, message: bytes) -> DeliveryStatus: ...

    def send_many(self, deliveries: Sequence[tuple[str, bytes]]) -> list[DeliveryStatus]:
        """Deliver concurrently (a bounded pool); statuses in the order of ``deliveries``."""
        ...

    def close(self, connection_id: str) -> DeliveryStatus:
        """Close the connection from the server side (API Gateway then runs ``$disconnect``): SENT when
        closed, GONE when it was already gone, FAILED when the management API refused or failed."""
        ...


# What StreamState.claim_sequences answers for a claim besides a first sequence number (>= 1).
SEQ_UNSEQUENCED = 0  # the backend is down: send anyway, with seq 0 ("not sequenced")
SEQ_DROP = -1  # the connection already got a newer round of this lane: do not send this one


@dataclass(frozen=True)
class SequenceClaim:
    """``count`` data messages about to go to one connection. ``lane`` names a publisher whose rounds
    are ordered (e.g. ``quote``): a claim whose ``round_id`` is not newer than the last one claimed for the
    connection in that lane is refused (SEQ_DROP). ``lane`` None (snapshots) is never refused."""

    connection_id: str
    count: int
    lane: str | None = None
    round_id: int = 0


@dataclass(frozen=True)
class StoredRound:
    """One publish round's changed items, stored once for its shard workers: each item's topic and its
    encoded spec message, with the round's lane, id and timestamp (what numbering and frames need)."""

    lane: str
    round_id: int
    timestamp: float
    items: tuple[tuple[str, bytes], ...]


class StreamState(Protocol):
    """What fan-out remembers between runs (Redis in AWS): the last value published per topic, per-minute
    delivery counters for /ws/stats, per-connection sequence numbers and resync allowance, and each
    round's changed items for its shard workers."""

    def put_round(self, key: str, stored: StoredRound, *, ttl_seconds: int) -> bool:
        """Store a round for its workers; False when the backend is down (the publisher then delivers
        the round itself)."""
        ...

    def get_round(self, key: str) -> StoredRound | None:
        """The stored round, or None when it expired, was never stored or the backend is down."""
        ...

    def claim_sequences(self, claims: Sequence[SequenceClaim], *, ttl_seconds: int) -> list[int]:
        """For each claim, atomically per connection: the first of ``count`` consecutive sequence numbers
        (the connection's counter advances by ``count``), SEQ_DROP, or SEQ_UNSEQUENCED when the backend is
        down. One round trip for all claims; the per-connection state expires ``ttl_seconds`` after its
        last claim."""
        ...

    def allow_resync(self, connection_id: str, *, interval_seconds: int) -> bool:
        """True at most once per ``interval_seconds`` per connection (True when the backend is down)."""
        ...

    def claim_changes(self, changes: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (topic, fingerprint), atomically per topic, record the fingerprint as the topic's
        latest; False where it already was (unchanged: nothing to send). One round trip for all. True
        when the backend is down (re-sending beats losing an update)."""
        ...

    def forget(self, topic: str) -> None:
        """Drop the topic's fingerprint (a delivery round failed: let the next refresh send again)."""
        ...

    def add_counts(self, counts: Mapping[str, int]) -> None: ...

    def counts_last_hour(self) -> Mapping[str, int] | None:
        """Totals per counter name over the last 60 minutes; None when the backend is down."""
        ...

    def registry_copy(self) -> RegistryCopy | None:
        """The current version's copy of the topic registry with every pair added since it was read
        (one round trip); None when there is no such copy or the backend is down."""
        ...

    def start_registry_copy(self) -> int | None:
        """Open a new version (additions from now on are recorded under it) before the registry is read
        for it; None when the backend is down."""
        ...

    def store_registry_copy(self, version: int, registry: TopicRegistry, *, built_at: float) -> None: ...

    def add_to_registry_copy(self, pairs: Sequence[tuple[int, str]]) -> None:
        """Record (shard, topic) pairs just written to the registry under the current version."""
        ...


# --- scheduled jobs: run records (DynamoDB in AWS) --------------------------------------------------


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class JobRun:
    """One run of one job, as recorded (and served by /jobs/{task_id})."""

    task_id: str
    job_name: str
    trigger: str  # "schedule" or "manual"
    status: RunStatus
    started_at: datetime
    finished_at: datetime | None = None
    duration_ms: int | None = None
    counts: Mapping[str, int] = field(default_factory=dict)
    error: str | None = None
    event_id: str | None = None  # the EventBridge event id (schedule triggers): duplicate deliveries share it
    expires_at: int = 0  # epoch seconds; the table's TTL attribute (retention), filtered on read


class JobRunStore(Protocol):
    def start(self, run: JobRun) -> bool:
        """Record a new run (status running or skipped). False when a run with this task id already exists
        (a duplicate delivery of the same event): nothing is written then."""
        ...

    def finish(self, run: JobRun) -> None:
        """Overwrite the run's outcome (status, finished_at, duration, counts, error)."""
        ...

    def get(self, task_id: str, *, now: float) -> JobRun | None: ...

    def recent(self, job_name: str, *, limit: int, now: float) -> list[JobRun]:
        """The job's latest runs, newest first: one Query on the by-job index (job_name, started_at)."""
        ...

    def delete_expired(self, *, now: float) -> int:
        """Remove runs past their retention (DynamoDB's TTL deletes late); returns how many went."""
        ...


# --- sharded fan-out: one asynchronous worker invocation per shard of a publish round ---------------


@dataclass(frozen=True)
class ShardTask:
    """One worker invocation: deliver round ``round_id``'s changed values to the connections of ``shard``."""

    round_id: str
    shard: int


@dataclass(frozen=True)
class DispatchReport:
    dispatched: int
    failed: tuple[int, ...]  # shards whose invocation could not be queued


class ShardDispatcher(Protocol):
    def dispatch(self, tasks: Sequence[ShardTask]) -> DispatchReport:
        """Queue one asynchronous worker invocation per task; never raises for a failed invocation."""
        ...
