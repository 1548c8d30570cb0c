"""The shapes of one provider call: what the build step is asked (an ``Ask``), what it produces (a
``ProviderRequest``, or ``Answered`` when nothing need be fetched), what comes back (a reply), and a
vendor's table of dataset modules."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any, Generic, TypeVar

from chalicelib.models.market import DataKind, Interval, MoverType, Period

T = TypeVar("T")


@dataclass(frozen=True)
class ProviderRequest:
    """What the build step produces: a pure description of one upstream call (no secrets logged from it)."""

    url: str
    params: Mapping[str, str] = field(repr=False)  # may hold a key: never printed
    headers: Mapping[str, str] | None = field(default=None, repr=False)
    # Statuses the parse step reads itself (Tiingo's 404 "unknown ticker") instead of the generic mapping.
    passthrough_statuses: frozenset[int] = frozenset()


@dataclass(frozen=True)
class JsonReply:
    status: int
    payload: object
    retry_after_seconds: int | None = None


@dataclass(frozen=True)
class Reply(JsonReply):
    """An answer before the generic status mapping, as ``_classify`` sees it: ``payload`` is the decoded
    JSON body, or None when the body is not JSON."""

    request: ProviderRequest | None = None
    snippet: str = ""  # the vendor's own error text, shortened; never the URL


@dataclass(frozen=True)
class Answered(Generic[T]):
    """What a build step returns when the vendor need not be asked (an empty batch, a symbol it never lists)."""

    value: T


# --- what a call asks: the build and parse steps read their arguments from it ------------------------


@dataclass(frozen=True, kw_only=True)
class Ask:
    provider: str  # the label errors carry (the vendor, or ``replay``)
    base_url: str
    clock: Callable[[], datetime]


@dataclass(frozen=True, kw_only=True)
class QuoteAsk(Ask):
    symbols: Sequence[str]


@dataclass(frozen=True, kw_only=True)
class HistoryAsk(Ask):
    symbol: str
    period: Period
    interval: Interval


@dataclass(frozen=True, kw_only=True)
class ProfileAsk(Ask):
    symbol: str


@dataclass(frozen=True, kw_only=True)
class SearchAsk(Ask):
    query: str
    limit: int


@dataclass(frozen=True, kw_only=True)
class NewsAsk(Ask):
    symbol: str
    limit: int


@dataclass(frozen=True, kw_only=True)
class MoversAsk(Ask):
    mover_type: MoverType
    limit: int


# --- a vendor's table: one dataset module per kind -------------------------------------------------

# (build, parse) of one data kind. Typed loosely here: each dataset module types its own pair.
Route = tuple[Callable[[Any], ProviderRequest | Answered[Any]], Callable[[JsonReply, Any], Any]]


def routes_of(*datasets: ModuleType) -> dict[DataKind, Route]:
    """``{DataKind: (build, parse)}`` from dataset modules, each declaring ``KIND``, ``build`` and ``parse``."""
    return {dataset.KIND: (dataset.build, dataset.parse) for dataset in datasets}


def checked_query(query: str, limit: int) -> str:
    """A search query, stripped; ValueError for an empty one or a limit below 1."""
    stripped = query.strip()
    if not stripped:
        raise ValueError("query must not be empty")
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return stripped
