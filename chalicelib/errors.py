"""The AppError hierarchy and its one mapping onto HTTP.

Adapters translate SDK and vendor failures into these once (``raise ... from exc``); services raise
them for policy outcomes; app.py turns any of them into the standard error body. Nobody matches on
message text: the class decides the status and the machine-readable ``code``.
"""

from __future__ import annotations


class AppError(Exception):
    """Base of every error the service raises on purpose."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_seconds = retry_after_seconds


class ConfigurationError(AppError):
    """The environment is invalid; raised at cold start."""

    status_code = 500
    code = "configuration_error"


class ValidationFailed(AppError):
    status_code = 400
    code = "validation_error"


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"


class MissingCredentials(Unauthorized):
    """No token at all (RFC 6750 §3.1: the challenge then carries no error code)."""


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class SymbolNotFound(NotFound):
    code = "symbol_not_found"


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"


class ServiceUnavailable(AppError):
    """Nothing could serve the request: every source failed and no stale copy exists."""

    status_code = 503
    code = "service_unavailable"


class StoreUnavailable(AppError):
    """The connection store (DynamoDB) failed or could not be reached."""

    status_code = 503
    code = "store_unavailable"


# --- Provider-side failures: raised by adapters, consumed by the market-data service. ---


class ProviderError(AppError):
    """A provider could not answer. Subclasses say whether trying another provider makes sense."""

    status_code = 502
    code = "provider_error"
    # Worth asking the same provider again after a short backoff (network blips, timeouts, 5xx).
    retryable = False
    # Counts towards opening the provider's circuit breaker.
    counts_as_failure = True

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


class ProviderUnavailable(ProviderError):
    """Network failure or 5xx: retry with backoff, then try the next provider."""

    code = "provider_unavailable"
    retryable = True


class ProviderAuthError(ProviderError):
    """The provider refused our key or plan (401/402/403): next provider; retrying cannot help."""

    code = "provider_auth_error"


class ProviderNoData(ProviderError):
    """The provider answered but holds nothing for this request (e.g. no bars in the range): next provider."""

    code = "provider_no_data"
    counts_as_failure = False


class ProviderUnsupported(ProviderError):
    """The provider does not offer this request (an interval, a period): skipped, not a failure."""

    code = "provider_unsupported"
    counts_as_failure = False


class ProviderTimeout(ProviderUnavailable):
    code = "provider_timeout"


class ProviderResponseCut(ProviderError):
    """The vendor's answer was cut: over the byte cap or still trickling at the deadline. A vendor
    failure (the breaker counts it); not retried (a second try would hold the Lambda as long again):
    the chain moves on to the next vendor."""

    code = "provider_response_cut"


class ProviderRateLimited(ProviderError):
    code = "provider_rate_limited"


class ProviderParseError(ProviderError):
    """The provider answered with something that is not the documented payload."""

    code = "provider_parse_error"


# Raised by the provider chain itself, before any call: our own guards, not the vendor's answer.
class QuotaExhausted(ProviderRateLimited):
    """Our own shared quota for the vendor is used up: skip it (never wait)."""

    code = "quota_exhausted"
    counts_as_failure = False


class CircuitOpen(ProviderError):
    """The vendor's breaker is open: skip it until the cool-down ends."""

    code = "circuit_open"
    counts_as_failure = False


class ProviderSymbolNotFound(ProviderError):
    """The provider positively says the symbol does not exist."""

    status_code = 404
    code = "symbol_not_found"
    counts_as_failure = False


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
