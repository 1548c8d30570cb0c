"""Market-wide panels (indices, sectors, movers, sentiment, the overview), each read through the cache;
the refresh jobs force them (``refresh=True``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from chalicelib.errors import AppError, RateLimited, ServiceUnavailable
from chalicelib.models.api import (
    IndexQuote,
    IndicesPayload,
    MoversPayload,
    SectorPerformance,
    SectorsPayload,
    SentimentPayload,
)
from chalicelib.models.market import DataKind, MoverType, Quote
from chalicelib.models.served import Served
from chalicelib.services import sentiment
from chalicelib.services.market_data.reads import ChainReads, newest
from chalicelib.services.provider_chain import AllProvidersFailed

R = TypeVar("R")

# The indices the dashboard shows, in display order (Yahoo's symbols; FMP uses the same).
INDICES: tuple[tuple[str, str], ...] = (
    ("^GSPC", "S&P 500"),
    ("^DJI", "Dow Jones Industrial Average"),
    ("^IXIC", "Nasdaq Composite"),
    ("^RUT", "Russell 2000"),
    ("^VIX", "CBOE Volatility Index"),
)

# The 11 GICS sectors, each measured by its Select Sector SPDR ETF (the usual market proxy).
SECTOR_ETFS: tuple[tuple[str, str], ...] = (
    ("Communication Services", "XLC"),
    ("Consumer Discretionary", "XLY"),
    ("Consumer Staples", "XLP"),
    ("Energy", "XLE"),
    ("Financials", "XLF"),
    ("Health Care", "XLV"),
    ("Industrials", "XLI"),
    ("Information Technology", "XLK"),
    ("Materials", "XLB"),
    ("Real Estate", "XLRE"),
    ("Utilities", "XLU"),
)

# Movers are fetched once at the largest size any request may ask for (MoversQuery's bound), then
# sliced per request: the client's `limit` is not part of the cache key.
MOVERS_FETCH_SIZE = 25


@dataclass(frozen=True)
class Overview:
    """Everything the dashboard's landing screen needs, each part with its own provenance. A part that
    cannot be served is None and named in ``errors`` (part → why), so one failing source never blanks
    the page."""

    indices: Served[IndicesPayload] | None
    sectors: Served[SectorsPayload] | None
    gainers: Served[MoversPayload] | None
    losers: Served[MoversPayload] | None
    actives: Served[MoversPayload] | None
    sentiment: Served[SentimentPayload] | None
    errors: dict[str, str] = field(default_factory=dict)


class MarketPanels(ChainReads):
    def get_movers(
        self, mover_type: MoverType, limit: int, *, deadline: float | None = None, refresh: bool = False
    ) -> Served[MoversPayload]:
        fetch = self._upstream(
            DataKind.MOVERS,
            f"market {mover_type.value}",
            lambda p, timeout: p.get_movers(mover_type, MOVERS_FETCH_SIZE, timeout_seconds=timeout),
            deadline,
            lambda movers: MoversPayload(type=mover_type, movers=movers, as_of=newest(q.as_of for q in movers)),
        )
        key = f"market:movers:{mover_type.value}"
        served = self._read(self.kinds.movers, key, fetch, deadline, refresh=refresh)
        return served.with_payload(served.payload.model_copy(update={"movers": served.payload.movers[:limit]}))

    def get_indices(self, *, deadline: float | None = None, refresh: bool = False) -> Served[IndicesPayload]:
        def fetch() -> tuple[IndicesPayload, str]:
            quotes, source, missing, _ = self._quote_set(
                DataKind.INDICES, [s for s, _ in INDICES], "market indices", deadline
            )
            names = dict(INDICES)
            indices = [
                IndexQuote(**quotes[symbol].model_dump(), index_name=names[symbol])
                for symbol, _ in INDICES
                if symbol in quotes
            ]
            as_of = newest(q.as_of for q in indices)
            return IndicesPayload(indices=indices, unavailable=missing, as_of=as_of), source

        return self._read(self.kinds.indices, "market:indices", fetch, deadline, refresh=refresh)

    def get_sectors(self, *, deadline: float | None = None, refresh: bool = False) -> Served[SectorsPayload]:
        def fetch() -> tuple[SectorsPayload, str]:
            etfs = [etf for _, etf in SECTOR_ETFS]
            quotes, source, _, reasons = self._quote_set(DataKind.SECTORS, etfs, "sector performance", deadline)
            sectors = [
                SectorPerformance(
                    sector=name,
                    etf=etf,
                    price=quotes[etf].price if etf in quotes else None,
                    change_percent=quotes[etf].change_percent if etf in quotes else None,
                    as_of=quotes[etf].as_of if etf in quotes else None,
                )
                for name, etf in SECTOR_ETFS
            ]
            changes = [s.change_percent for s in sectors if s.change_percent is not None]
            return SectorsPayload(
                sectors=sectors,
                advancers=sum(1 for c in changes if c > 0),
                decliners=sum(1 for c in changes if c < 0),
                unavailable=[s.sector for s in sectors if s.change_percent is None],
                unavailable_reasons={s.sector: reasons[s.etf] for s in sectors if s.etf in reasons},
                as_of=newest(q.as_of for q in quotes.values()),
            ), source

        return self._read(self.kinds.sectors, "market:sectors", fetch, deadline, refresh=refresh)

    def get_sentiment(self, *, deadline: float | None = None, refresh: bool = False) -> Served[SentimentPayload]:
        def fetch() -> tuple[SentimentPayload, str]:
            indices = self._optional(lambda: self.get_indices(deadline=deadline))
            sectors = self._optional(lambda: self.get_sectors(deadline=deadline))
            payload = sentiment.composite(indices.payload if indices else None, sectors.payload if sectors else None)
            if payload is None:
                raise ServiceUnavailable(
                    "market sentiment needs the VIX, the S&P 500 or sector quotes, and none is available",
                    retry_after_seconds=30,
                )
            sources = sorted({r.provenance.source for r in (indices, sectors) if r is not None})
            return payload, "+".join(sources)

        return self._read(self.kinds.sentiment, "market:sentiment", fetch, deadline, refresh=refresh)

    def get_overview(self, *, deadline: float | None = None) -> Overview:
        errors: dict[str, str] = {}

        def part(name: str, call: Callable[[], R]) -> R | None:
            try:
                return call()
            except RateLimited:  # the caller's own budget is spent: the whole request ends, not one part
                raise
            except AppError as exc:
                errors[name] = exc.message
                return None

        return Overview(
            indices=part("indices", lambda: self.get_indices(deadline=deadline)),
            sectors=part("sectors", lambda: self.get_sectors(deadline=deadline)),
            gainers=part("gainers", lambda: self.get_movers(MoverType.GAINERS, 5, deadline=deadline)),
            losers=part("losers", lambda: self.get_movers(MoverType.LOSERS, 5, deadline=deadline)),
            actives=part("actives", lambda: self.get_movers(MoverType.ACTIVES, 5, deadline=deadline)),
            sentiment=part("sentiment", lambda: self.get_sentiment(deadline=deadline)),
            errors=errors,
        )

    @staticmethod
    def _optional(call: Callable[[], R]) -> R | None:
        try:
            return call()
        except RateLimited:  # the caller's own budget is spent: the whole request ends
            raise
        except AppError:
            return None

    def _quote_set(
        self, kind: DataKind, symbols: list[str], what: str, deadline: float | None
    ) -> tuple[dict[str, Quote], str, list[str], dict[str, str]]:
        """Quotes for a fixed list (indices, sector ETFs). Symbols the sources do not carry are listed as
        unavailable, each with why (unknown to the source, or the sources failed); when nothing was found
        because sources failed (not because they lack the symbols), it is an error, so a stale copy can
        be served instead of an empty panel."""
        batch = self.chain.fetch_quotes(kind, symbols, deadline=deadline)
        if not batch.found and batch.failed:
            raise AllProvidersFailed(what, batch.outcome)
        quotes = {symbol: quote for symbol, (quote, _) in batch.found.items()}
        sources = sorted({source for _, source in batch.found.values()}) or [
            p.name for p in self.chain.serving(kind)[:1]
        ]
        missing = [s for s in symbols if s not in quotes]
        reasons = {
            s: (batch.unknown_reasons.get(s) or f"{s} is not known to the data source ({'+'.join(sources)})")
            if s in batch.unknown
            else f"no source could quote {s} ({batch.outcome.summary()})"
            for s in missing
        }
        return quotes, "+".join(sources) or "none", missing, reasons
