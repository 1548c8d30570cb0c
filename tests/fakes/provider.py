"""An in-memory MarketDataProvider: a vendor that knows a fixed set of quotes and answers from them,
with failures queued per call (``fail_next``) and every call recorded (the upstream boundary the chain's
quota, breaker and retry policies are counted at).

It honours the port's promises: one "upstream call" per method call, unknown symbols absent from an
answer, ProviderSymbolNotFound where the vendor names why (``not_found``), ProviderUnsupported outside
``capabilities``. Runs through the port's contract tests with YahooProvider
(tests/contract/test_provider_port_contract.py)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from chalicelib.errors import ProviderError, ProviderSymbolNotFound, ProviderUnsupported
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

AS_OF = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)


def quote(symbol: str, price: float = 100.0) -> Quote:
    return Quote(symbol=symbol, price=price, as_of=AS_OF)


class InMemoryProvider:
    def __init__(
        self,
        vendor: str,
        quotes: Iterable[Quote] = (),
        *,
        capabilities: Iterable[DataKind] = (DataKind.QUOTE, DataKind.INDICES, DataKind.SECTORS),
        max_symbols_per_quote_call: int = 50,
        name: str | None = None,
    ) -> None:
        self._vendor = vendor
        self._name = name or vendor
        self._capabilities = frozenset(capabilities)
        self._max = max_symbols_per_quote_call
        self.quotes = {q.symbol: q for q in quotes}
        # Symbols the vendor positively says do not exist, with its words (others it does not know are
        # simply absent from its answers, as vendors drop unknown symbols silently).
        self.not_found: dict[str, str] = {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []  # (method, its symbols or query)
        self.timeouts: list[float] = []  # the timeout each call was given (the chain's deadline policy)
        self._failures: list[ProviderError] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def vendor(self) -> str:
        return self._vendor

    @property
    def capabilities(self) -> frozenset[DataKind]:
        return self._capabilities

    @property
    def max_symbols_per_quote_call(self) -> int:
        return self._max

    def fail_next(self, *errors: ProviderError) -> None:
        """The next calls raise these, in order (then answers resume)."""
        self._failures.extend(errors)

    def _upstream(self, method: str, kind: DataKind, args: Sequence[str], timeout_seconds: float) -> None:
        if kind not in self._capabilities:
            raise ProviderUnsupported(self._name, f"{kind.value} is not offered")
        self.calls.append((method, tuple(args)))
        self.timeouts.append(timeout_seconds)
        if self._failures:
            raise self._failures.pop(0)

    def get_quotes(self, symbols: Sequence[str], *, timeout_seconds: float) -> dict[str, Quote]:
        self._upstream("get_quotes", DataKind.QUOTE, symbols, timeout_seconds)
        if len(symbols) == 1 and symbols[0] in self.not_found:
            raise ProviderSymbolNotFound(self._name, self.not_found[symbols[0]])
        return {s: self.quotes[s] for s in symbols if s in self.quotes}

    def get_historical(
        self, symbol: str, period: Period, interval: Interval, *, timeout_seconds: float
    ) -> HistoricalData:
        self._upstream("get_historical", DataKind.HISTORICAL, [symbol, period.value, interval.value], timeout_seconds)
        raise ProviderUnsupported(self._name, "no bars are held by this fake")

    def get_profile(self, symbol: str, *, timeout_seconds: float) -> CompanyProfile:
        self._upstream("get_profile", DataKind.PROFILE, [symbol], timeout_seconds)
        raise ProviderUnsupported(self._name, "no profiles are held by this fake")

    def search(self, query: str, limit: int, *, timeout_seconds: float) -> list[SearchResult]:
        self._upstream("search", DataKind.SEARCH, [query], timeout_seconds)
        matches = [q for q in self.quotes.values() if q.symbol.startswith(query.upper())]
        return [SearchResult(symbol=q.symbol, name=q.name or q.symbol) for q in matches][:limit]

    def get_news(self, symbol: str, limit: int, *, timeout_seconds: float) -> list[NewsArticle]:
        self._upstream("get_news", DataKind.NEWS, [symbol], timeout_seconds)
        return [][:limit]

    def get_movers(self, mover_type: MoverType, limit: int, *, timeout_seconds: float) -> list[Quote]:
        self._upstream("get_movers", DataKind.MOVERS, [mover_type.value], timeout_seconds)
        ranked = sorted(self.quotes.values(), key=lambda q: q.change_percent or 0.0, reverse=True)
        return ranked[:limit]
