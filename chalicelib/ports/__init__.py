"""The boundaries between services and the outside world, one Protocol each.

Services depend on these; adapters implement them; tests run fakes and real adapters through the
same contract tests. One module per area; everything is re-exported here, so ``from chalicelib.ports
import X`` is the import path.
"""

from chalicelib.ports.jobs import (
    DispatchReport,
    JobRun,
    JobRunStore,
    RunStatus,
    ShardDispatcher,
    ShardTask,
)
from chalicelib.ports.limits import (
    BreakerState,
    BreakerStatus,
    BucketLimits,
    BudgetDecision,
    CircuitBreaker,
    ConnectionIdentity,
    MessageBudget,
    QuotaDecision,
    QuotaLimits,
    Quotas,
    QuotaUsage,
    RateLimitDecision,
    RateLimiter,
)
from chalicelib.ports.market import (
    Cache,
    CacheEntry,
    KindCounters,
    MarketDataProvider,
)
from chalicelib.ports.streaming import (
    SEQ_DROP,
    SEQ_UNSEQUENCED,
    Broadcaster,
    ConnectionRecord,
    ConnectionStore,
    CopyChange,
    DeliveryStatus,
    RegistryRepair,
    SequenceClaim,
    StoredCopy,
    StoredRound,
    StreamingStats,
    StreamState,
    TopicRegistry,
    shard_for,
)

__all__ = [
    "SEQ_DROP",
    "SEQ_UNSEQUENCED",
    "BreakerState",
    "BreakerStatus",
    "Broadcaster",
    "BucketLimits",
    "BudgetDecision",
    "Cache",
    "CacheEntry",
    "CircuitBreaker",
    "ConnectionIdentity",
    "ConnectionRecord",
    "ConnectionStore",
    "CopyChange",
    "DeliveryStatus",
    "DispatchReport",
    "JobRun",
    "JobRunStore",
    "KindCounters",
    "MarketDataProvider",
    "MessageBudget",
    "QuotaDecision",
    "QuotaLimits",
    "QuotaUsage",
    "Quotas",
    "RateLimitDecision",
    "RateLimiter",
    "RegistryRepair",
    "RunStatus",
    "SequenceClaim",
    "ShardDispatcher",
    "ShardTask",
    "StoredCopy",
    "StoredRound",
    "StreamState",
    "StreamingStats",
    "TopicRegistry",
    "shard_for",
]
