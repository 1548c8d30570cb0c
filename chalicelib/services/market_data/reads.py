"""What the families of reads (quotes, instruments, panels) share: the read-through policy, the chain
that fills a miss, and every data kind's cache settings, declared once from one ``CacheTtl``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel

from chalicelib.models import api, market
from chalicelib.models.served import Served
from chalicelib.ports import MarketDataProvider
from chalicelib.services.market_data.cached import CacheKind, CacheTtl
from chalicelib.services.market_data.read_through import ReadThrough
from chalicelib.services.provider_chain import ProviderChain

P = TypeVar("P", bound=BaseModel)
R = TypeVar("R")


@dataclass(frozen=True)
class CacheKinds:
    """Each data kind's counter name, payload model and freshness."""

    quote: CacheKind[market.Quote]
    historical: CacheKind[market.HistoricalData]
    profile: CacheKind[market.CompanyProfile]
    news: CacheKind[api.NewsPayload]
    search: CacheKind[api.SearchPayload]
    movers: CacheKind[api.MoversPayload]
    indices: CacheKind[api.IndicesPayload]
    sectors: CacheKind[api.SectorsPayload]
    sentiment: CacheKind[api.SentimentPayload]

    @classmethod
    def of(cls, ttl: CacheTtl) -> CacheKinds:
        return cls(
            # Readers' lookups mark quotes as recently read: the refresh job keeps those fresh ahead of them.
            quote=CacheKind("quote", market.Quote, ttl.quote, hot=True),
            historical=CacheKind("historical", market.HistoricalData, ttl.historical),
            profile=CacheKind("profile", market.CompanyProfile, ttl.profile),
            news=CacheKind("news", api.NewsPayload, ttl.news),
            search=CacheKind("search", api.SearchPayload, ttl.search),
            movers=CacheKind("movers", api.MoversPayload, ttl.movers),
            indices=CacheKind("indices", api.IndicesPayload, ttl.indices),
            sectors=CacheKind("sectors", api.SectorsPayload, ttl.sectors),
            sentiment=CacheKind("sentiment", api.SentimentPayload, ttl.sentiment),
        )


def newest(times: Iterable[datetime]) -> datetime:
    """A panel's or list's ``as_of``: its newest item's time, or now when it holds none."""
    return max(times, default=datetime.now(UTC))


def unchanged(value: P) -> P:
    """The wrap of a kind whose vendor answer is already its cached payload (history, a profile)."""
    return value


@dataclass(frozen=True)
class ChainReads:
    """The base of every family of reads: each subclass says only which key, kind and upstream call a
    read uses; how a read goes through the cache and the chain is here."""

    rt: ReadThrough
    chain: ProviderChain
    kinds: CacheKinds

    def _read(
        self,
        kind: CacheKind[P],
        key: str,
        fetch: Callable[[], tuple[P, str]],
        deadline: float | None,
        *,
        refresh: bool = False,
        symbol: str | None = None,
    ) -> Served[P]:
        """A cached copy when fresh, else ``fetch`` (``refresh``: fetch regardless, as the jobs do)."""
        if refresh:
            return self.rt.refresh(kind, key, fetch, deadline)
        return self.rt.get(kind, key, fetch, deadline, symbol=symbol)

    def _upstream(
        self,
        kind: market.DataKind,
        what: str,
        call: Callable[[MarketDataProvider, float], R],
        deadline: float | None,
        wrap: Callable[[R], P],
    ) -> Callable[[], tuple[P, str]]:
        """The fetch a miss runs: the chain's first answer to ``call``, made into the cached payload."""

        def fetch() -> tuple[P, str]:
            value, source = self.chain.fetch(kind, what, call, deadline=deadline)
            return wrap(value), source

        return fetch
