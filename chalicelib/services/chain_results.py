"""What a provider chain walk reports: each vendor's attempt, the outcome, the errors the walk raises,
and the per-request meter of upstream calls (what the per-user budget charges for)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field

from chalicelib import observability
from chalicelib.errors import (
    CircuitOpen,
    ProviderError,
    ProviderNoData,
    ProviderUnsupported,
    QuotaExhausted,
    ServiceUnavailable,
)
from chalicelib.models.market import Quote

logger = observability.logger


@dataclass
class UpstreamMeter:
    """Provider calls made while serving one request (what the per-user budget charges for)."""

    calls: int = 0


_meter: ContextVar[UpstreamMeter | None] = ContextVar("upstream_meter", default=None)


@contextlib.contextmanager
def metered_upstream_calls() -> Iterator[UpstreamMeter]:
    """Count every provider call made inside the block (retries included: each one is a call the
    vendor's quota pays for)."""
    meter = UpstreamMeter()
    token = _meter.set(meter)
    try:
        yield meter
    finally:
        _meter.reset(token)


def count_upstream_call() -> None:
    """One provider call made: counted on the meter of the request being served, if any."""
    meter = _meter.get()
    if meter is not None:
        meter.calls += 1


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_seconds: float = 0.2
    max_backoff_seconds: float = 2.0


@dataclass
class Attempt:
    """What happened with one vendor during one chain walk (for errors and the providers endpoint)."""

    provider: str
    outcome: str  # ok, not_found, skipped_breaker, skipped_quota, error
    detail: str | None = None  # the vendor's words: logs only, never a response body
    retry_after_seconds: int | None = None
    code: str | None = None  # the error's code (provider_timeout, quota_exhausted...): safe to show


@dataclass
class ChainOutcome:
    attempts: list[Attempt] = field(default_factory=list)
    upstream_calls: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """What clients may read: each vendor with its outcome and error code, never vendor text."""
        return "; ".join(f"{a.provider}: {a.code or a.outcome}" for a in self.attempts) or "no provider serves this"

    def detail(self) -> str:
        """The same with the vendors' own words, for the logs."""
        return "; ".join(f"{a.provider}: {a.detail or a.outcome}" for a in self.attempts) or "no provider serves this"


@dataclass
class QuoteBatch:
    found: dict[str, tuple[Quote, str]]  # symbol → (quote, source label)
    unknown: set[str]
    failed: set[str]
    outcome: ChainOutcome
    # Why a vendor said a symbol is unknown, where it said (e.g. "replay: APTV was not yet listed on …").
    unknown_reasons: dict[str, str] = field(default_factory=dict)


class AllProvidersFailed(ServiceUnavailable):
    """Every vendor that could serve the request failed or was skipped."""

    def __init__(self, what: str, outcome: ChainOutcome, *, retry_after_seconds: int = 30) -> None:
        super().__init__(
            f"{what} is not available right now ({outcome.summary()})", retry_after_seconds=retry_after_seconds
        )
        self.outcome = outcome
        logger.warning("no provider could serve the request", extra={"what": what, "attempts": outcome.detail()})


class UnknownSymbol(Exception):
    """A vendor that can judge says the symbol does not exist (``reason``: its words, if it gave any)."""

    def __init__(self, provider: str, reason: str | None = None) -> None:
        super().__init__(provider)
        self.provider = provider
        self.reason = reason


class NoDataAnywhere(Exception):
    """Every vendor that serves the kind answered, and none holds data for this request (no bars for the
    range, no profile for an index): a per-request verdict, not an outage, so retrying cannot help."""

    def __init__(self, what: str, outcome: ChainOutcome) -> None:
        super().__init__(what)
        self.what = what
        self.outcome = outcome


def failed_attempt(provider: str, exc: ProviderError) -> Attempt:
    if isinstance(exc, CircuitOpen):
        outcome = "skipped_breaker"
    elif isinstance(exc, QuotaExhausted):
        outcome = "skipped_quota"
    elif isinstance(exc, ProviderNoData | ProviderUnsupported):
        outcome = "no_data"
    else:
        outcome = "error"
    return Attempt(provider, outcome, exc.detail, exc.retry_after_seconds, code=exc.code)


def retry_after(outcome: ChainOutcome) -> int:
    """When a vendor said (or its quota window says) when it is usable again, the soonest of those;
    otherwise 30 s."""
    hints = [a.retry_after_seconds for a in outcome.attempts if a.retry_after_seconds]
    return max(1, min(hints)) if hints else 30
