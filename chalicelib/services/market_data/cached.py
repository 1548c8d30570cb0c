"""The read-through cache's vocabulary: a kind's settings, the document a key holds, what a batch answered."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, JsonValue, ValidationError

from chalicelib import observability
from chalicelib.errors import SymbolNotFound
from chalicelib.models.served import Provenance, Served
from chalicelib.ports import CacheEntry

logger = observability.logger

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True)
class CacheTtl:
    """Freshness per data kind. The spec's values; sectors, movers and search are ours (see README)."""

    quote: float = 60
    historical: float = 3600
    profile: float = 1800
    news: float = 900
    indices: float = 120
    sentiment: float = 300
    sectors: float = 300
    movers: float = 300
    search: float = 3600


@dataclass(frozen=True)
class CacheTimings:
    stale_ttl_seconds: float
    lock_ttl_seconds: float
    lock_wait_seconds: float
    lock_poll_seconds: float = 0.05
    # How long a vendor's "no such symbol" is remembered per data kind (0: not at all).
    negative_ttl_seconds: float = 300.0


@dataclass(frozen=True)
class CacheKind(Generic[P]):
    """One data kind's cache settings. ``name`` is its counter and metric dimension and, for kinds read
    many at a time, its key family (``quote:AAPL``); ``hot``: readers' lookups mark the symbol as read
    recently (the set the quote refresh keeps fresh ahead of them)."""

    name: str
    payload: type[P]
    ttl: float
    hot: bool = False

    def key(self, symbol: str) -> str:
        return f"{self.name}:{symbol}"


@dataclass(frozen=True)
class Fetched(Generic[P]):
    """What one batched upstream call answered for a batch's misses. A symbol neither found nor unknown
    failed, for ``failure`` (why, in words a client may read)."""

    found: dict[str, tuple[P, str]]  # symbol → (payload, source label)
    unknown: dict[str, str | None]  # symbol → the vendor's reason, if it gave one
    failure: str
    upstream_calls: dict[str, int]


@dataclass
class Many(Generic[P]):
    """A batch's answer: each symbol is served (fresh, fetched now or stale), unknown or failed."""

    served: dict[str, Served[P]] = field(default_factory=dict)
    unknown: dict[str, str | None] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # symbol → why no copy could be served
    upstream_calls: dict[str, int] = field(default_factory=dict)  # vendor → calls made for this batch


def stored_document(
    payload: BaseModel, source: str, retrieved_at: datetime, replay_day: date | None = None
) -> dict[str, JsonValue]:
    """What a key holds: the payload in its wire spelling with its provenance, as one JSON object."""
    return {
        "data": payload.model_dump(mode="json", by_alias=True),
        "source": source,
        "retrieved_at": retrieved_at.isoformat(),
        "replay_day": replay_day.isoformat() if replay_day else None,
    }


def decode(kind: CacheKind[P], entry: CacheEntry | None) -> Served[P] | None:
    """The served copy a cache entry holds (cached, not stale); None for no entry or an unreadable one."""
    if entry is None:
        return None
    value = entry.value
    try:
        if not isinstance(value, dict):
            raise TypeError("not a stored document")
        replay_day = value.get("replay_day")
        retrieved_at = datetime.fromisoformat(str(value["retrieved_at"]))
        if retrieved_at.tzinfo is None:
            raise ValueError("retrieved_at without a time zone")
        return Served(
            payload=kind.payload.model_validate(value["data"]),
            provenance=Provenance(
                source=str(value["source"]),
                retrieved_at=retrieved_at,
                cached=True,
                stale=False,
                replay_day=date.fromisoformat(replay_day) if isinstance(replay_day, str) else None,
            ),
        )
    except (ValueError, KeyError, TypeError, ValidationError):
        # Written by an incompatible version: a miss; the next write replaces it.
        logger.warning("discarding unreadable cache entry", extra={"kind": kind.name})
        return None


def negative_key(kind: CacheKind[Any], symbol: str) -> str:
    return f"unknown:{kind.name}:{symbol}"


def negative_reason(entry: CacheEntry) -> str | None:
    return entry.value if isinstance(entry.value, str) and entry.value else None


def symbol_not_found(symbol: str, reason: str | None = None) -> SymbolNotFound:
    """404 for an unknown symbol; with the vendor's ``reason`` when it gave one (e.g. not yet listed)."""
    if reason:
        return SymbolNotFound(
            f"no instrument with symbol {symbol!r} is available ({reason}); "
            "look symbols up with POST /api/v1/market/search"
        )
    return SymbolNotFound(
        f"no instrument with symbol {symbol!r} is known to our providers. Check the ticker "
        "(class shares use a dash, e.g. BRK-B; indices a caret, e.g. ^GSPC) or look it up "
        "with POST /api/v1/market/search"
    )
