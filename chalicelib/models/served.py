"""What the market-data service answers: a payload with where it came from (the domain's one spelling
of provenance). The REST routes (chalicelib/market_api.py ``to_wire``) and the WebSocket updates
(models/streaming/outbound.py) each map it onto their wire, once."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel

P = TypeVar("P", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Provenance:
    """``source``: the provider (or providers, joined with "+") that answered, or "replay"; ``cached``:
    read from the cache rather than fetched for this request; ``stale``: past its freshness, served
    because every source failed; ``replay_day``: in replay only, the replayed trading day it belongs to."""

    source: str
    retrieved_at: datetime
    cached: bool
    stale: bool
    replay_day: date | None = None


@dataclass(frozen=True, slots=True)
class Served(Generic[P]):
    """A payload (validated when fetched or read from the cache) with its provenance."""

    payload: P
    provenance: Provenance

    def as_stale(self) -> Served[P]:
        """The same copy served past its freshness because every source failed."""
        return Served(self.payload, dataclasses.replace(self.provenance, cached=True, stale=True))

    def with_payload(self, payload: P) -> Served[P]:
        """Another payload with this provenance (a slice of this one: the first ``limit`` items)."""
        return Served(payload, self.provenance)
