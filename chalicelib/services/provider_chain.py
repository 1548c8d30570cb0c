"""The provider chain: which vendor is asked, in which order, how often, and when to give up.

Order is the spec's (Yahoo → FMP → Alpha Vantage → Tiingo), skipping a vendor that lacks the data kind
or a key (it is not in the list at all), whose breaker is open, or whose shared quota is exhausted
(skipped, never waited on). Each upstream call takes one unit of the vendor's quota first. Transient
failures (timeouts, network errors, 5xx) are retried with capped exponential backoff and full jitter
(tenacity) within the caller's deadline; anything else moves on to the next vendor at once.

An unknown symbol stops the walk: the first vendor that positively says "no such symbol" is believed,
so garbage input costs one upstream call, not four. Only a vendor that answered counts as a judge.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_any,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from chalicelib import observability
from chalicelib.errors import (
    CircuitOpen,
    ProviderError,
    ProviderSymbolNotFound,
    QuotaExhausted,
    ServiceUnavailable,
)
from chalicelib.models.market import DataKind, Quote
from chalicelib.ports import BreakerState, CircuitBreaker, MarketDataProvider, QuotaLimits, Quotas
from chalicelib.services.chain_results import (
    AllProvidersFailed,
    Attempt,
    ChainOutcome,
    NoDataAnywhere,
    QuoteBatch,
    RetryPolicy,
    UnknownSymbol,
    UpstreamMeter,
    count_upstream_call,
    failed_attempt,
    metered_upstream_calls,
    retry_after,
)

__all__ = [
    "AllProvidersFailed",
    "Attempt",
    "ChainOutcome",
    "CircuitOpen",
    "NoDataAnywhere",
    "ProviderChain",
    "QuotaExhausted",
    "QuoteBatch",
    "RetryPolicy",
    "UnknownSymbol",
    "UpstreamMeter",
    "metered_upstream_calls",
]

logger = observability.logger

T = TypeVar("T")

# Seconds kept back from the Lambda deadline for writing the cache and answering.
DEADLINE_MARGIN_SECONDS = 0.5


# Not slotted: `providers` is a cached property (built on first use).
@dataclass(frozen=True)
class ProviderChain:
    vendors: Sequence[MarketDataProvider] | Callable[[], Sequence[MarketDataProvider]]
    _: KW_ONLY
    quotas: Quotas
    breaker: CircuitBreaker
    limits: Mapping[str, QuotaLimits]
    retry: RetryPolicy
    provider_timeout_seconds: float
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @functools.cached_property
    def providers(self) -> list[MarketDataProvider]:
        """The vendors, in fallback order. A callable builds them when the chain is first asked for one: a
        request served from the cache never builds them (nor imports requests and the vendor adapters)."""
        return list(self.vendors() if callable(self.vendors) else self.vendors)

    def serving(self, kind: DataKind) -> list[MarketDataProvider]:
        return [p for p in self.providers if kind in p.capabilities]

    # --- one value, first vendor that has it -----------------------------------------------------

    def fetch(
        self,
        kind: DataKind,
        what: str,
        call: Callable[[MarketDataProvider, float], T],
        *,
        deadline: float | None,
    ) -> tuple[T, str]:
        """The first successful answer and the label of the vendor that gave it.

        Raises UnknownSymbol when a vendor says the symbol does not exist, NoDataAnywhere when every vendor
        answered without data for this request, AllProvidersFailed otherwise."""
        outcome = ChainOutcome()
        for provider in self.serving(kind):
            try:
                value = self._call(provider, kind, functools.partial(call, provider), deadline, outcome)
            except ProviderSymbolNotFound as exc:
                outcome.attempts.append(Attempt(provider.name, "not_found"))
                raise UnknownSymbol(provider.name, exc.message) from None
            except ProviderError as exc:
                outcome.attempts.append(failed_attempt(provider.name, exc))
                continue
            outcome.attempts.append(Attempt(provider.name, "ok"))
            return value, provider.name
        if outcome.attempts and all(attempt.outcome == "no_data" for attempt in outcome.attempts):
            raise NoDataAnywhere(what, outcome)
        raise AllProvidersFailed(what, outcome, retry_after_seconds=retry_after(outcome))

    # --- many symbols, batched --------------------------------------------------------------------

    def fetch_quotes(self, kind: DataKind, symbols: Sequence[str], *, deadline: float | None) -> QuoteBatch:
        """Quotes for as many symbols as possible in as few upstream calls as the vendors allow.

        A symbol missing from a vendor's successful answer is unknown (vendors drop unknown symbols
        silently) and is not asked again; symbols a vendor could not answer for (error, quota, breaker)
        go to the next vendor; those no vendor could answer for end up in ``failed``."""
        outcome = ChainOutcome()
        found: dict[str, tuple[Quote, str]] = {}
        unknown: set[str] = set()
        reasons: dict[str, str] = {}
        pending = list(dict.fromkeys(symbols))
        for provider in self.serving(kind):
            if not pending:
                break
            size = max(1, provider.max_symbols_per_quote_call)
            still_pending: list[str] = []
            for start in range(0, len(pending), size):
                chunk = pending[start : start + size]
                try:
                    quotes = self._call(provider, kind, _quote_call(provider, chunk), deadline, outcome)
                except ProviderSymbolNotFound as exc:
                    # The vendor answered, naming why (a one-symbol call): unknown, like a symbol left out
                    # of a batch answer, and not a failure (_call recorded a breaker success).
                    outcome.attempts.append(Attempt(provider.name, "not_found", exc.detail))
                    unknown.update(chunk)
                    reasons.update(dict.fromkeys(chunk, exc.message))
                    continue
                except ProviderError as exc:
                    outcome.attempts.append(failed_attempt(provider.name, exc))
                    still_pending.extend(chunk)
                    if isinstance(exc, QuotaExhausted | CircuitOpen):
                        # The vendor is out for this walk: hand every remaining chunk to the next one.
                        still_pending.extend(pending[start + size :])
                        break
                    continue
                for symbol in chunk:
                    quote = quotes.get(symbol)
                    if quote is None:
                        unknown.add(symbol)
                    else:
                        found[symbol] = (quote, provider.name)
            else:
                if not still_pending:
                    outcome.attempts.append(Attempt(provider.name, "ok"))
            pending = still_pending
        return QuoteBatch(found=found, unknown=unknown, failed=set(pending), outcome=outcome, unknown_reasons=reasons)

    # --- one upstream call with quota, breaker and retries ---------------------------------------

    def _call(
        self,
        provider: MarketDataProvider,
        kind: DataKind,
        call: Callable[[float], T],
        deadline: float | None,
        outcome: ChainOutcome,
    ) -> T:
        vendor = provider.vendor
        if not self.breaker.allow(vendor):
            observability.count("ProviderSkipped", dimensions={"provider": vendor, "reason": "breaker_open"})
            raise CircuitOpen(provider.name, "circuit breaker open after repeated failures; skipped")

        def attempt() -> T:
            decision = self.quotas.try_take(vendor, self.limits.get(vendor, QuotaLimits(0, 0)))
            if not decision.granted:
                observability.count("ProviderSkipped", dimensions={"provider": vendor, "reason": "quota"})
                raise QuotaExhausted(
                    provider.name,
                    f"shared {decision.exhausted_window} quota exhausted",
                    retry_after_seconds=decision.retry_after_seconds,
                )
            if decision.remaining is not None:
                observability.count("ProviderQuotaLeft", dimensions={"provider": vendor}, value=decision.remaining)
            timeout = self._call_timeout(deadline)
            started = self.monotonic()
            outcome.upstream_calls[vendor] = outcome.upstream_calls.get(vendor, 0) + 1
            count_upstream_call()
            observability.count("ProviderCall", dimensions={"provider": vendor, "kind": kind.value})
            try:
                return call(timeout)
            except ProviderError as exc:
                observability.count("ProviderError", dimensions={"provider": vendor, "code": exc.code})
                logger.warning(
                    "provider call failed", extra={"provider": vendor, "kind": kind.value, "error": exc.message}
                )
                raise
            finally:
                observability.milliseconds(
                    "ProviderLatency", (self.monotonic() - started) * 1000, dimensions={"provider": vendor}
                )

        retrying = Retrying(
            stop=stop_any(stop_after_attempt(self.retry.max_attempts), _OutOfTime(deadline, self.monotonic)),
            wait=wait_random_exponential(multiplier=self.retry.base_seconds, max=self.retry.max_backoff_seconds),
            retry=retry_if_exception(lambda exc: isinstance(exc, ProviderError) and exc.retryable),
            sleep=self.sleep,
            reraise=True,
        )
        try:
            value = retrying(attempt)
        except ProviderError as exc:
            if exc.counts_as_failure:
                self._breaker_changed(vendor, self.breaker.record_failure(vendor, exc.code))
            elif isinstance(exc, ProviderSymbolNotFound):
                self._breaker_changed(vendor, self.breaker.record_success(vendor))
            raise
        self._breaker_changed(vendor, self.breaker.record_success(vendor))
        return value

    def _breaker_changed(self, vendor: str, state: BreakerState | None) -> None:
        if state is None:
            return
        logger.warning("circuit breaker changed", extra={"provider": vendor, "state": state.value})
        observability.count("BreakerStateChange", dimensions={"provider": vendor, "state": state.value})

    def _call_timeout(self, deadline: float | None) -> float:
        if deadline is None:
            return self.provider_timeout_seconds
        remaining = deadline - self.monotonic() - DEADLINE_MARGIN_SECONDS
        if remaining <= 0.05:
            raise ServiceUnavailable("request ran out of time before reaching a provider", retry_after_seconds=5)
        return min(self.provider_timeout_seconds, remaining)


class _OutOfTime(stop_base):
    """Stop retrying when the next backoff plus one more call would not fit before the deadline."""

    def __init__(self, deadline: float | None, monotonic: Callable[[], float]) -> None:
        self._deadline = deadline
        self.monotonic = monotonic

    def __call__(self, retry_state: RetryCallState) -> bool:
        if self._deadline is None:
            return False
        upcoming = retry_state.upcoming_sleep or 0.0
        return self._deadline - self.monotonic() - upcoming < DEADLINE_MARGIN_SECONDS + 0.25


def _quote_call(provider: MarketDataProvider, symbols: list[str]) -> Callable[[float], dict[str, Quote]]:
    def call(timeout: float) -> dict[str, Quote]:
        return provider.get_quotes(symbols, timeout_seconds=timeout)

    return call
