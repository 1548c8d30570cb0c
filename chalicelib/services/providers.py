"""GET /providers: each vendor's place in the chain, its capabilities, quota use and breaker state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from chalicelib.models.api import ProvidersResponse, ProviderStatus, QuotaWindow
from chalicelib.models.market import DataKind
from chalicelib.ports import CircuitBreaker, QuotaLimits, Quotas


@dataclass(frozen=True)
class ProviderInfo:
    """A vendor the service knows about, configured or not (a vendor without a key is not in the chain)."""

    vendor: str
    configured: bool
    capabilities: frozenset[DataKind]


def _window(limit: int, used: int | None, resets_in: int | None) -> QuotaWindow:
    remaining = None if used is None or limit == 0 else max(0, limit - used)
    return QuotaWindow(limit=limit, used=used, remaining=remaining, resets_in_seconds=resets_in)


class ProvidersService:
    def __init__(
        self,
        catalog: Sequence[ProviderInfo],
        *,
        quotas: Quotas,
        breaker: CircuitBreaker,
        limits: Mapping[str, QuotaLimits],
        data_source: str,
    ) -> None:
        self._catalog = list(catalog)
        self._quotas = quotas
        self._breaker = breaker
        self._limits = dict(limits)
        self._data_source = data_source

    def status(self) -> ProvidersResponse:
        statuses: list[ProviderStatus] = []
        position = 0
        for info in self._catalog:
            limits = self._limits.get(info.vendor, QuotaLimits(0, 0))
            usage = self._quotas.usage(info.vendor) if info.configured else None
            breaker = self._breaker.status(info.vendor) if info.configured else None
            if info.configured:
                position += 1
            statuses.append(
                ProviderStatus(
                    name=info.vendor,
                    configured=info.configured,
                    position=position if info.configured else None,
                    capabilities=sorted(kind.value for kind in info.capabilities),
                    quota_minute=_window(
                        limits.per_minute,
                        usage.minute_used if usage else None,
                        usage.minute_resets_in_seconds if usage else None,
                    ),
                    quota_day=_window(
                        limits.per_day,
                        usage.day_used if usage else None,
                        usage.day_resets_in_seconds if usage else None,
                    ),
                    breaker_state=breaker.state.value if breaker else None,
                    consecutive_failures=breaker.consecutive_failures if breaker else None,
                    last_error=breaker.last_error if breaker else None,
                    last_error_at=(
                        datetime.fromtimestamp(breaker.last_error_at, tz=UTC)
                        if breaker and breaker.last_error_at is not None
                        else None
                    ),
                )
            )
        return ProvidersResponse(data_source=self._data_source, providers=statuses)
