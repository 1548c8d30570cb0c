"""GET /providers: each vendor's place in the chain, its capabilities, quota use and breaker state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import UTC, datetime

from chalicelib.models.api import ProvidersResponse, ProviderStatus, QuotaWindow
from chalicelib.models.market import DataKind
from chalicelib.ports import BreakerStatus, CircuitBreaker, QuotaLimits, Quotas


@dataclass(frozen=True)
class ProviderInfo:
    """A vendor the service knows about, configured or not (a vendor without a key is not in the chain)."""

    vendor: str
    configured: bool
    capabilities: frozenset[DataKind]


def _window(limit: int, used: int | None, resets_in: int | None) -> QuotaWindow:
    remaining = None if used is None or limit == 0 else max(0, limit - used)
    return QuotaWindow(limit=limit, used=used, remaining=remaining, resets_in_seconds=resets_in)


@dataclass(frozen=True, slots=True)
class ProvidersService:
    catalog: Sequence[ProviderInfo]
    _: KW_ONLY
    quotas: Quotas
    breaker: CircuitBreaker
    limits: Mapping[str, QuotaLimits]
    data_source: str

    def status(self, *, detail: bool) -> ProvidersResponse:
        """``detail`` (operators): quota use and the breakers' failure counts and last error codes. Others
        get the chain and each breaker's state only: quota left tells a caller how much it takes to empty
        a vendor for everyone."""
        statuses: list[ProviderStatus] = []
        position = 0
        for info in self.catalog:
            limits = self.limits.get(info.vendor, QuotaLimits(0, 0))
            breaker = self.breaker.status(info.vendor) if info.configured else None
            if info.configured:
                position += 1
            status = ProviderStatus(
                name=info.vendor,
                configured=info.configured,
                position=position if info.configured else None,
                capabilities=sorted(kind.value for kind in info.capabilities),
                breaker_state=breaker.state.value if breaker else None,
            )
            if detail:
                status = self._with_detail(status, info, limits, breaker)
            statuses.append(status)
        return ProvidersResponse(data_source=self.data_source, providers=statuses)

    def _with_detail(
        self, status: ProviderStatus, info: ProviderInfo, limits: QuotaLimits, breaker: BreakerStatus | None
    ) -> ProviderStatus:
        usage = self.quotas.usage(info.vendor) if info.configured else None
        return status.model_copy(
            update={
                "quota_minute": _window(
                    limits.per_minute,
                    usage.minute_used if usage else None,
                    usage.minute_resets_in_seconds if usage else None,
                ),
                "quota_day": _window(
                    limits.per_day,
                    usage.day_used if usage else None,
                    usage.day_resets_in_seconds if usage else None,
                ),
                "consecutive_failures": breaker.consecutive_failures if breaker else None,
                "last_error": breaker.last_error if breaker else None,
                "last_error_at": (
                    datetime.fromtimestamp(breaker.last_error_at, tz=UTC)
                    if breaker and breaker.last_error_at is not None
                    else None
                ),
            }
        )
