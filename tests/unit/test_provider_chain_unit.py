"""ProviderChain's policies on fakes (no Redis, no HTTP): vendor order and fallback, breakers, shared
quotas, retries within the deadline, unknown symbols, batching; and the stale copy MarketDataService
serves when the whole chain fails. The same policies over real Redis and vendors: tests/app."""

from __future__ import annotations

import pytest

from chalicelib.errors import (
    ProviderAuthError,
    ProviderNoData,
    ProviderUnavailable,
    ServiceUnavailable,
)
from chalicelib.models.market import DataKind
from chalicelib.ports import BreakerState, QuotaLimits
from chalicelib.services.market_data import CacheTimings, MarketDataService
from chalicelib.services.provider_chain import (
    AllProvidersFailed,
    NoDataAnywhere,
    ProviderChain,
    RetryPolicy,
    UnknownSymbol,
)
from tests.fakes.cache import InMemoryCache
from tests.fakes.clock import FakeClock
from tests.fakes.provider import InMemoryProvider, quote
from tests.fakes.quotas import InMemoryCircuitBreaker, InMemoryQuotas

UNLIMITED = QuotaLimits(0, 0)


class Chain:
    """A chain of fake vendors (yahoo → fmp → tiingo) on fake quotas and breakers, with a fake clock."""

    def __init__(self, *, limits: dict[str, QuotaLimits] | None = None, attempts: int = 1, threshold: int = 3) -> None:
        self.clock = FakeClock()
        self.sleeps: list[float] = []
        self.quotas = InMemoryQuotas(clock=self.clock)
        self.breaker = InMemoryCircuitBreaker(failure_threshold=threshold, cooldown_seconds=30, clock=self.clock)
        known = [quote("AAPL", 190.0), quote("MSFT", 410.0), quote("NVDA", 120.0)]
        self.yahoo = InMemoryProvider("yahoo", known, max_symbols_per_quote_call=2)
        self.fmp = InMemoryProvider("fmp", known)
        self.tiingo = InMemoryProvider("tiingo", known, capabilities=[DataKind.QUOTE])
        self.chain = ProviderChain(
            [self.yahoo, self.fmp, self.tiingo],
            quotas=self.quotas,
            breaker=self.breaker,
            limits=limits or {},
            retry=RetryPolicy(max_attempts=attempts, base_seconds=0.01, max_backoff_seconds=0.02),
            provider_timeout_seconds=2.0,
            monotonic=lambda: self.clock.now,
            sleep=self.sleeps.append,
        )

    def quote(self, symbol: str = "AAPL") -> tuple[float, str]:
        found, source = self.chain.fetch(
            DataKind.QUOTE, f"quote {symbol}", lambda p, t: p.get_quotes([symbol], timeout_seconds=t), deadline=None
        )
        return found[symbol].price, source


def test_the_first_vendor_serves_and_the_others_are_never_asked() -> None:
    c = Chain()
    assert c.quote() == (190.0, "yahoo")
    assert (len(c.yahoo.calls), len(c.fmp.calls), len(c.tiingo.calls)) == (1, 0, 0)


def test_a_failing_vendor_falls_back_to_the_next_in_order() -> None:
    c = Chain()
    c.yahoo.fail_next(ProviderAuthError("yahoo", "key refused"))
    c.fmp.fail_next(ProviderUnavailable("fmp", "503"))
    assert c.quote() == (190.0, "tiingo")
    assert [len(p.calls) for p in (c.yahoo, c.fmp, c.tiingo)] == [1, 1, 1]


def test_a_vendor_without_the_data_kind_is_not_in_the_walk() -> None:
    c = Chain()
    assert [p.name for p in c.chain.serving(DataKind.INDICES)] == ["yahoo", "fmp"]


def test_transient_failures_are_retried_with_backoff_then_the_vendor_answers() -> None:
    c = Chain(attempts=3)
    c.yahoo.fail_next(ProviderUnavailable("yahoo", "503"), ProviderUnavailable("yahoo", "timeout"))
    assert c.quote() == (190.0, "yahoo")
    assert len(c.yahoo.calls) == 3
    assert len(c.sleeps) == 2
    assert all(0 <= s <= 0.02 for s in c.sleeps)


def test_a_non_retryable_failure_moves_on_at_once() -> None:
    c = Chain(attempts=3)
    c.yahoo.fail_next(ProviderAuthError("yahoo", "key refused"))
    assert c.quote() == (190.0, "fmp")
    assert (len(c.yahoo.calls), c.sleeps) == (1, [])


def test_consecutive_failures_open_the_breaker_and_the_vendor_is_skipped_until_the_cooldown() -> None:
    c = Chain(threshold=2)
    for _ in range(2):
        c.yahoo.fail_next(ProviderAuthError("yahoo", "key refused"))
        assert c.quote() == (190.0, "fmp")
    status = c.breaker.status("yahoo")
    assert status is not None
    assert status.state is BreakerState.OPEN
    assert c.quote() == (190.0, "fmp")
    assert len(c.yahoo.calls) == 2  # skipped without a call while open
    c.clock.advance(31)
    assert c.quote() == (190.0, "yahoo")  # the half-open probe succeeds and closes it
    closed = c.breaker.status("yahoo")
    assert closed is not None
    assert closed.state is BreakerState.CLOSED


def test_an_exhausted_shared_quota_skips_the_vendor_without_a_call() -> None:
    c = Chain(limits={"yahoo": QuotaLimits(per_minute=1, per_day=0)})
    assert c.quote() == (190.0, "yahoo")
    assert c.quote() == (190.0, "fmp")
    assert len(c.yahoo.calls) == 1
    assert c.quotas.taken == ["yahoo", "fmp"]


def test_every_vendor_failing_raises_with_the_soonest_retry_after() -> None:
    c = Chain(limits={"tiingo": QuotaLimits(per_minute=1, per_day=0)})
    c.quotas.try_take("tiingo", QuotaLimits(per_minute=1, per_day=0))  # tiingo's minute is used up
    c.yahoo.fail_next(ProviderAuthError("yahoo", "key refused"))
    c.fmp.fail_next(ProviderAuthError("fmp", "key refused"))
    with pytest.raises(AllProvidersFailed) as raised:
        c.quote()
    attempts = [(a.provider, a.outcome) for a in raised.value.outcome.attempts]
    assert attempts == [("yahoo", "error"), ("fmp", "error"), ("tiingo", "skipped_quota")]
    assert 1 <= (raised.value.retry_after_seconds or 0) <= 60
    assert "key refused" not in raised.value.outcome.summary()  # vendor text stays in the logs


def test_an_unknown_symbol_stops_the_walk_at_the_first_vendor_that_says_so() -> None:
    c = Chain()
    c.yahoo.not_found["ZZZZ"] = "ZZZZ was never listed"
    with pytest.raises(UnknownSymbol) as raised:
        c.quote("ZZZZ")
    assert raised.value.provider == "yahoo"
    assert "ZZZZ was never listed" in (raised.value.reason or "")
    assert (len(c.fmp.calls), len(c.tiingo.calls)) == (0, 0)
    status = c.breaker.status("yahoo")
    assert status is not None
    assert status.consecutive_failures == 0  # an answer, not a failure


def test_no_data_from_every_vendor_is_a_verdict_not_an_outage() -> None:
    c = Chain()
    for provider in (c.yahoo, c.fmp, c.tiingo):
        provider.fail_next(ProviderNoData(provider.name, "no bars"))
    with pytest.raises(NoDataAnywhere):
        c.quote()


def test_the_call_timeout_is_cut_to_the_deadline_and_an_exhausted_deadline_asks_nobody() -> None:
    c = Chain()
    c.chain.fetch(
        DataKind.QUOTE, "q", lambda p, t: p.get_quotes(["AAPL"], timeout_seconds=t), deadline=c.clock.now + 1.5
    )
    assert c.yahoo.timeouts == [1.0]  # 1.5 s left minus the 0.5 s margin, under the 2 s provider timeout
    with pytest.raises(ServiceUnavailable):
        c.chain.fetch(DataKind.QUOTE, "q", lambda p, t: p.get_quotes(["AAPL"], timeout_seconds=t), deadline=c.clock.now)
    assert len(c.yahoo.calls) == 1


def test_batched_quotes_are_chunked_and_failed_chunks_go_to_the_next_vendor() -> None:
    c = Chain()
    c.yahoo.fail_next(ProviderUnavailable("yahoo", "503"))  # the first chunk (AAPL, MSFT) fails
    batch = c.chain.fetch_quotes(DataKind.QUOTE, ["AAPL", "MSFT", "NVDA", "ZZZZ", "AAPL"], deadline=None)
    assert c.yahoo.calls == [("get_quotes", ("AAPL", "MSFT")), ("get_quotes", ("NVDA", "ZZZZ"))]
    assert c.fmp.calls == [("get_quotes", ("AAPL", "MSFT"))]
    assert {s: src for s, (_, src) in batch.found.items()} == {"AAPL": "fmp", "MSFT": "fmp", "NVDA": "yahoo"}
    assert (batch.unknown, batch.failed) == ({"ZZZZ"}, set())
    assert batch.outcome.upstream_calls == {"yahoo": 2, "fmp": 1}


def test_symbols_no_vendor_could_answer_for_are_failed_not_unknown() -> None:
    c = Chain()
    for provider in (c.yahoo, c.fmp, c.tiingo):
        provider.fail_next(ProviderAuthError(provider.name, "key refused"))
    batch = c.chain.fetch_quotes(DataKind.QUOTE, ["MSFT"], deadline=None)
    assert (batch.found, batch.unknown, batch.failed) == ({}, set(), {"MSFT"})


def test_a_stale_copy_is_served_when_every_vendor_fails() -> None:
    c = Chain()
    cache = InMemoryCache(clock=c.clock)
    service = MarketDataService(
        cache=cache,
        chain=c.chain,
        timings=CacheTimings(stale_ttl_seconds=3600, lock_ttl_seconds=5, lock_wait_seconds=0.1),
        clock=c.clock,
        monotonic=lambda: c.clock.now,
        sleep=c.sleeps.append,
    )
    first = service.get_quote("AAPL")
    assert (first.provenance.cached, first.provenance.stale, first.provenance.source) == (False, False, "yahoo")
    c.clock.advance(600)  # past freshness, within the stale window
    for provider in (c.yahoo, c.fmp, c.tiingo):
        provider.fail_next(ProviderAuthError(provider.name, "key refused"))
    stale = service.get_quote("AAPL")
    assert (stale.provenance.cached, stale.provenance.stale, stale.payload.price) == (True, True, 190.0)
    c.clock.advance(3600)  # past the stale window too: nothing to fall back on
    for provider in (c.yahoo, c.fmp, c.tiingo):
        provider.fail_next(ProviderAuthError(provider.name, "key refused"))
    with pytest.raises(ServiceUnavailable):
        service.get_quote("AAPL")
