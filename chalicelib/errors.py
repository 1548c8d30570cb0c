"""The AppError hierarchy and its one mapping onto HTTP.

Adapters translate SDK and vendor failures into these once (``raise ... from exc``); services raise
them for policy outcomes; app.py turns any of them into the standard error body. Nobody matches on
message text: the class decides the status and the machine-readable ``code``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """Base of every error the service raises on purpose. A subclass names its HTTP status and its
    machine-readable code as class keywords (``class NotFound(AppError, status=404, code="not_found")``);
    either left out is inherited."""

    status_code: ClassVar[int] = 500
    code: str = "internal_error"  # an instance may name its own (ProtocolError)

    def __init_subclass__(cls, *, status: int | None = None, code: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status_code = status
        if code is not None:
            cls.code = code

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_seconds = retry_after_seconds


class ConfigurationError(AppError, code="configuration_error"):
    """The environment is invalid; raised at cold start."""


class ValidationFailed(AppError, status=400, code="validation_error"): ...


class Unauthorized(AppError, status=401, code="unauthorized"): ...


class MissingCredentials(Unauthorized):
    """No token at all (RFC 6750 §3.1: the challenge then carries no error code)."""


class Forbidden(AppError, status=403, code="forbidden"): ...


class NotFound(AppError, status=404, code="not_found"): ...


class SymbolNotFound(NotFound, code="symbol_not_found"): ...


class RateLimited(AppError, status=429, code="rate_limited"): ...


class ServiceUnavailable(AppError, status=503, code="service_unavailable"):
    """Nothing could serve the request: every source failed and no stale copy exists."""


class StoreUnavailable(AppError, status=503, code="store_unavailable"):
    """The connection store (DynamoDB) failed or could not be reached."""


# --- Provider-side failures: raised by adapters, consumed by the market-data service. ---


class ProviderError(AppError, status=502, code="provider_error"):
    """A provider could not answer. Subclasses say whether trying another provider makes sense, as class
    keywords: ``retryable`` (worth asking the same provider again after a short backoff: network blips,
    timeouts, 5xx) and ``counts_as_failure`` (counts towards opening the provider's circuit breaker)."""

    retryable: ClassVar[bool] = False
    counts_as_failure: ClassVar[bool] = True

    def __init_subclass__(
        cls, *, retryable: bool | None = None, counts_as_failure: bool | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if retryable is not None:
            cls.retryable = retryable
        if counts_as_failure is not None:
            cls.counts_as_failure = counts_as_failure

    def __init__(self, provider: str, detail: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(f"{provider}: {detail}", retry_after_seconds=retry_after_seconds)
        self.provider = provider
        # What went wrong, without the vendor's name: ``message`` is "<provider>: <detail>".
        self.detail = detail

    def rebuilt(self, *, provider: str | None = None, detail: str | None = None) -> ProviderError:
        """A fresh error of the same type (no cause, no context, no traceback), relabelled or reworded."""
        return type(self)(
            provider or self.provider,
            self.detail if detail is None else detail,
            retry_after_seconds=self.retry_after_seconds,
        )


class ProviderUnavailable(ProviderError, code="provider_unavailable", retryable=True):
    """Network failure or 5xx: retry with backoff, then try the next provider."""


class ProviderAuthError(ProviderError, code="provider_auth_error"):
    """The provider refused our key or plan (401/402/403): next provider; retrying cannot help."""


class ProviderNoData(ProviderError, code="provider_no_data", counts_as_failure=False):
    """The provider answered but holds nothing for this request (e.g. no bars in the range): next provider."""


class ProviderUnsupported(ProviderError, code="provider_unsupported", counts_as_failure=False):
    """The provider does not offer this request (an interval, a period): skipped, not a failure."""


class ProviderTimeout(ProviderUnavailable, code="provider_timeout"): ...


class ProviderResponseCut(ProviderError, code="provider_response_cut"):
    """The vendor's answer was cut: over the byte cap or still trickling at the deadline. A vendor
    failure (the breaker counts it); not retried (a second try would hold the Lambda as long again):
    the chain moves on to the next vendor."""


class ProviderRateLimited(ProviderError, code="provider_rate_limited"): ...


class ProviderParseError(ProviderError, code="provider_parse_error"):
    """The provider answered with something that is not the documented payload."""


# Raised by the provider chain itself, before any call: our own guards, not the vendor's answer.
class QuotaExhausted(ProviderRateLimited, code="quota_exhausted", counts_as_failure=False):
    """Our own shared quota for the vendor is used up: skip it (never wait)."""


class CircuitOpen(ProviderError, code="circuit_open", counts_as_failure=False):
    """The vendor's breaker is open: skip it until the cool-down ends."""


class ProviderSymbolNotFound(ProviderError, status=404, code="symbol_not_found", counts_as_failure=False):
    """The provider positively says the symbol does not exist."""


# Every 401 says the same to the client: naming the failure (expired, wrong audience, bad signature...)
# tells a prober which part of a forged token to fix. The specific reason goes to the logs only.
UNAUTHORIZED_MESSAGE = "invalid or missing token"


def client_message(error: AppError) -> str:
    """What a client may read of ``error``: 401s are generic, the rest carry their own (safe) message."""
    if isinstance(error, Unauthorized):
        return UNAUTHORIZED_MESSAGE
    return error.message


def http_status_for(error: AppError) -> int:
    """The one place mapping an AppError onto an HTTP status."""
    return error.status_code
