"""Quotes: one symbol, a batch, and the refresh job's forced batch, all through the read-through cache."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from chalicelib.errors import AppError, ServiceUnavailable, ValidationFailed
from chalicelib.models.market import DataKind, Quote, normalize_symbol
from chalicelib.models.served import Served
from chalicelib.services.market_data.cached import Fetched, Many, symbol_not_found
from chalicelib.services.market_data.reads import ChainReads
from chalicelib.services.provider_chain import AllProvidersFailed, ProviderChain, UnknownSymbol


@dataclass(frozen=True)
class QuoteRefresh(Mapping[str, Served[Quote]]):
    """What a forced refresh fetched now, by symbol (stale copies are not in it), and the upstream calls
    it took per vendor (the jobs report them)."""

    quotes: dict[str, Served[Quote]]
    upstream_calls: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, symbol: str) -> Served[Quote]:
        return self.quotes[symbol]

    def __iter__(self) -> Iterator[str]:
        return iter(self.quotes)

    def __len__(self) -> int:
        return len(self.quotes)


@dataclass(frozen=True)
class BatchQuote:
    """One symbol of a batch (normalized; as the request spelled it when it is not a valid ticker): its
    served quote, or the error that says why it has none."""

    symbol: str
    quote: Served[Quote] | None = None
    error: AppError | None = None

    def __post_init__(self) -> None:
        if (self.quote is None) == (self.error is None):
            raise ValueError(f"a batch item holds a quote or an error, exactly one ({self.symbol})")


class QuoteReads(ChainReads):
    def get_quote(self, symbol: str, *, deadline: float | None = None) -> Served[Quote]:
        """One symbol's quote. ``symbol`` is already normalized; ``deadline`` is a monotonic time
        (the Lambda's remaining time) that bounds lock waits and provider calls."""

        def fetch() -> tuple[Quote, str]:
            batch = self.chain.fetch_quotes(DataKind.QUOTE, [symbol], deadline=deadline)
            if symbol in batch.found:
                return batch.found[symbol]
            if symbol in batch.unknown:
                raise UnknownSymbol("quote", batch.unknown_reasons.get(symbol))
            raise AllProvidersFailed(f"a quote for {symbol}", batch.outcome)

        return self.rt.get(self.kinds.quote, self.kinds.quote.key(symbol), fetch, deadline, symbol=symbol)

    def get_quotes(self, symbols: Sequence[str], *, deadline: float | None = None) -> list[BatchQuote]:
        """Many quotes, in request order: cached ones from one MGET, the rest in as few upstream calls as
        the vendors allow. A symbol that fails gets its own error item; the batch itself succeeds."""
        order, invalid, valid = _normalized(symbols)
        many = self.rt.get_many(self.kinds.quote, valid, self._fetcher(deadline), deadline)
        items = {**invalid, **_items(many)}
        return [items[s] for s in order]

    def refresh_quotes(self, symbols: Sequence[str], *, deadline: float | None = None) -> QuoteRefresh:
        """Fetch and cache the given (already valid) symbols regardless of freshness (the refresh job).
        Only values fetched now are returned, not stale copies."""
        _, _, valid = _normalized(symbols)
        many = self.rt.refresh_many(self.kinds.quote, valid, self._fetcher(deadline), deadline)
        fresh = {s: served for s, served in many.served.items() if not served.provenance.stale}
        return QuoteRefresh({s: fresh[s] for s in valid if s in fresh}, many.upstream_calls)

    def _fetcher(self, deadline: float | None) -> _BatchFetch:
        return _BatchFetch(self.chain, deadline)


@dataclass(frozen=True)
class _BatchFetch:
    """One batched quote call through the chain, in the read-through's terms."""

    chain: ProviderChain
    deadline: float | None

    def __call__(self, symbols: list[str]) -> Fetched[Quote]:
        batch = self.chain.fetch_quotes(DataKind.QUOTE, symbols, deadline=self.deadline)
        return Fetched(
            found=batch.found,
            unknown={s: batch.unknown_reasons.get(s) for s in batch.unknown},
            failure=batch.outcome.summary(),
            upstream_calls=dict(batch.outcome.upstream_calls),
        )


def _normalized(raw_symbols: Sequence[str]) -> tuple[list[str], dict[str, BatchQuote], list[str]]:
    """Request order (duplicates once), an error item per invalid symbol, and the valid ones."""
    order: list[str] = []
    invalid: dict[str, BatchQuote] = {}
    valid: list[str] = []
    for raw in raw_symbols:
        try:
            symbol = normalize_symbol(raw)
        except ValidationFailed as exc:
            order.append(raw)
            invalid[raw] = BatchQuote(raw, error=exc)
            continue
        if symbol not in valid:
            order.append(symbol)
            valid.append(symbol)
    return order, invalid, valid


def _items(many: Many[Quote]) -> dict[str, BatchQuote]:
    items = {s: BatchQuote(s, quote=served) for s, served in many.served.items()}
    for symbol, reason in many.unknown.items():
        items[symbol] = BatchQuote(symbol, error=symbol_not_found(symbol, reason))
    for symbol, reason in many.failed.items():
        failure = ServiceUnavailable(f"no quote for {symbol} is available right now ({reason})")
        items[symbol] = BatchQuote(symbol, error=failure)
    return items
