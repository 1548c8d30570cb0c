"""What FMP's datasets share: its error objects, the quote object both API generations send, its times.

FMP's answers and what they become (the provider's ``_classify`` and ``expect_list``):
- ``{"Error Message": "Invalid API KEY. ..."}`` (HTTP 401, or any status) -> ProviderAuthError.
- ``{"Error Message": "Limit Reach . ..."}`` (HTTP 429, or HTTP 200) -> ProviderRateLimited.
- HTTP 402/403 (or 200) whose message says the plan lacks the endpoint ("Exclusive Endpoint",
  "Premium", "Legacy Endpoint", "Restricted Endpoint", "not available under your current
  subscription") -> ProviderUnsupported: our key works, this endpoint is not in its plan. That is
  neither a failure of FMP (the breaker must not open FMP for the kinds the plan does cover) nor
  worth retrying. Any other 401/402/403 (other wording, an HTML or plain-text body) -> ProviderAuthError.
- any other ``{"Error Message": ...}`` / ``{"error": ...}`` object on HTTP 200 -> ProviderParseError:
  FMP answered deterministically with something that is not the documented payload (a rejected
  parameter, a renamed endpoint); retrying the same request cannot change it, and it should count
  towards the breaker.
- an object where an array is documented -> ProviderParseError.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chalicelib.adapters.providers.values import epoch, first_value, integer, number, text
from chalicelib.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderParseError,
    ProviderRateLimited,
    ProviderUnsupported,
    ValidationFailed,
)
from chalicelib.models.market import normalize_symbol

FMP_BASE_URL = "https://financialmodelingprep.com"

_ERROR_KEYS = ("Error Message", "error", "message")
# Lower-cased fragments of FMP's plan-refusal wording (fixtures README and issue threads).
_PLAN_MARKERS = (
    "exclusive endpoint",
    "premium",
    "legacy endpoint",
    "restricted endpoint",
    "not available under your current subscription",
    "only available for",
    "special endpoint",
)


def error_message(payload: object) -> str | None:
    """FMP's error text when the payload is an error object (``{"Error Message": ...}``, ``{"error": ...}``)."""
    if not isinstance(payload, dict):
        return None
    for key in _ERROR_KEYS:
        value = payload.get(key)
        if isinstance(value, str) and value.strip():
            return " ".join(value.split())[:200]
    return None


def is_plan_refusal(message: str) -> bool:
    lowered = message.lower()
    return any(marker in lowered for marker in _PLAN_MARKERS)


def classify_error(message: str, provider: str) -> ProviderError:
    """The typed error for an FMP error object that came with HTTP 200."""
    lowered = message.lower()
    if "invalid api key" in lowered:
        return ProviderAuthError(provider, message)
    if "limit reach" in lowered:  # checked before the plan markers: it also says "upgrade your plan"
        return ProviderRateLimited(provider, message)
    if is_plan_refusal(message):
        return ProviderUnsupported(provider, f"not in this FMP plan ({message})")
    return ProviderParseError(provider, f"FMP said {message!r} instead of data")


def fmp_epoch(value: object) -> datetime | None:
    """FMP's ``timestamp`` (epoch seconds, a number or a numeric string); zero or less: None."""
    seconds = number(value)
    return epoch(seconds) if seconds is not None and seconds > 0 else None


def is_servable_symbol(symbol: str) -> bool:
    """A ticker the service can key and serve (FMP also lists warrants/units no request can name)."""
    try:
        normalize_symbol(symbol)
    except ValidationFailed:
        return False
    return True


def quote_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """The quote fields both generations share, under either spelling."""
    return {
        "price": number(item.get("price")),
        "change": number(item.get("change")),
        # stable quote: changePercentage; v3 quote and the stable movers lists: changesPercentage.
        "change_percent": number(first_value(item, "changePercentage", "changesPercentage")),
        "volume": integer(item.get("volume")),
        "previous_close": number(item.get("previousClose")),
        "open": number(item.get("open")),
        "day_high": number(item.get("dayHigh")),
        "day_low": number(item.get("dayLow")),
        "fifty_two_week_high": number(item.get("yearHigh")),
        "fifty_two_week_low": number(item.get("yearLow")),
        "market_cap": integer(first_value(item, "marketCap", "mktCap")),
        "name": text(item.get("name")),
        "currency": text(item.get("currency")),
        "exchange": text(first_value(item, "exchange", "exchangeShortName")),
    }
