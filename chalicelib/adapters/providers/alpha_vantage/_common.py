"""What Alpha Vantage's datasets share: its request shape, its numbered keys and its message bodies.

* Every value is a string behind a numbered key (``"05. price": "112.1300"``); fields are looked up by
  the name after the number, so ``"5. volume"`` (daily) and ``"6. volume"`` (daily adjusted) both work.
* Errors arrive as HTTP 200 bodies: ``{"Note": ...}`` (old throttle wording) and ``{"Information": ...}``
  (2024+ throttle wording, and "premium endpoint" refusals), ``{"Error Message": "Invalid API call. ..."}``
  (what Alpha Vantage answers for an unknown ticker on symbol calls), ``{"Global Quote": {}}`` and ``{}``
  (unknown symbol). See tests/fixtures/providers/alpha_vantage/README.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.adapters.providers.market_calendar import NEW_YORK
from chalicelib.adapters.providers.values import json_object
from chalicelib.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderParseError,
    ProviderRateLimited,
    ProviderSymbolNotFound,
    ProviderUnavailable,
    ProviderUnsupported,
)

VENDOR = "alpha_vantage"
BASE_URL = "https://www.alphavantage.co/query"

# Alpha Vantage names US/Eastern in its metadata; tzdata knows that name only as a backward-compatible
# link, so it is resolved to the canonical zone first.
_ZONE_ALIASES = {"US/Eastern": "America/New_York"}
# Throttle wording, old and new: "...API call frequency is 5 calls per minute and 500 calls per day...",
# "...standard API rate limit is 25 requests per day...", "...spreading out your free API requests more
# sparingly (1 request per second)...". The 25/day text also says "subscribe to any of the premium plans",
# so it is recognised as a throttle before the premium check.
_THROTTLE_WORDS = ("rate limit", "call frequency", "calls per", "requests per", "request per", "sparingly")
_SHORT_THROTTLE_WORDS = ("per minute", "per second", "call frequency", "sparingly")
# Client code quotes the 2024+ daily-limit text as "We have detected your API key as <key> and our standard
# API rate limit is 25 requests per day...": the vendor's own text can carry the key.
_KEY_ECHO = re.compile(r"(?i)(api\s*key\s+as\s+)\S+")
_SNIPPET_CHARS = 160


def base_params(function: str, **extra: str) -> dict[str, str]:
    return {"function": function, **extra, "datatype": "json"}


def fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """Numbered keys by their name: {"05. price": x} -> {"price": x}; unnumbered keys unchanged."""
    named: dict[str, Any] = {}
    for key, value in item.items():
        prefix, dot, name = key.partition(". ")
        named[name.strip().lower() if dot and prefix.strip().isdigit() else key] = value
    return named


def zone(name: str | None, provider: str) -> ZoneInfo:
    if not name:
        return NEW_YORK
    try:
        return ZoneInfo(_ZONE_ALIASES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ProviderParseError(provider, f"unknown time zone {name[:40]!r}") from exc


def clip(text: str) -> str:
    text = _KEY_ECHO.sub(r"\1REDACTED", " ".join(text.split()))
    return text[:_SNIPPET_CHARS]


def vendor_message_error(payload: Mapping[str, Any], provider: str, *, symbol_call: bool) -> ProviderError | None:
    """The typed error for Alpha Vantage's HTTP-200 message bodies, or None when there is no message.

    * ``Note`` (older throttle wording) -> ProviderRateLimited.
    * ``Information``: throttle wording -> ProviderRateLimited; "premium" (a premium-only function or
      parameter value, e.g. TIME_SERIES_DAILY_ADJUSTED) -> ProviderUnsupported: this plan does not offer
      this request, while others still work, so it must neither count towards opening the vendor's breaker
      (ProviderAuthError would) nor be retried; any other Information text -> ProviderRateLimited (the
      key's documented meaning).
    * ``Error Message``: about the apikey -> ProviderAuthError; on a call naming a symbol ->
      ProviderSymbolNotFound (Alpha Vantage answers "Invalid API call" for an unknown ticker on
      TIME_SERIES_*); otherwise ProviderUnavailable.
    """
    error_message = payload.get("Error Message")
    if isinstance(error_message, str):
        lowered = error_message.lower()
        if "apikey" in lowered or "api key" in lowered:
            return ProviderAuthError(provider, f"key refused: {clip(error_message)}")
        if symbol_call:
            return ProviderSymbolNotFound(provider, f"unknown symbol: {clip(error_message)}")
        return ProviderUnavailable(provider, f"error message: {clip(error_message)}")
    note = payload.get("Note")
    if isinstance(note, str):
        return ProviderRateLimited(provider, f"throttled (Note): {clip(note)}", retry_after_seconds=60)
    information = payload.get("Information")
    if isinstance(information, str):
        lowered = information.lower()
        if any(word in lowered for word in _THROTTLE_WORDS):
            short = any(word in lowered for word in _SHORT_THROTTLE_WORDS)
            return ProviderRateLimited(
                provider, f"throttled (Information): {clip(information)}", retry_after_seconds=60 if short else None
            )
        if "premium" in lowered:
            return ProviderUnsupported(provider, f"premium-only request: {clip(information)}")
        return ProviderRateLimited(provider, f"Information: {clip(information)}")
    return None


def raise_vendor_message(body: Mapping[str, Any], provider: str, *, symbol_call: bool, what: str) -> NoReturn:
    """When the expected content is absent: the vendor message's error, or an unknown symbol for an empty
    answer to a symbol call, or a parse error naming ``what`` was missing."""
    error = vendor_message_error(body, provider, symbol_call=symbol_call)
    if error is not None:
        raise error
    if not body and symbol_call:
        raise ProviderSymbolNotFound(provider, "empty answer for this symbol")
    raise ProviderParseError(provider, f"no {what} in payload (keys: {', '.join(sorted(body))[:120]})")


def require(payload: object, key: str, provider: str, *, symbol_call: bool) -> tuple[dict[str, Any], Any]:
    """The payload as an object and its ``key``; raises the vendor message's error when ``key`` is absent."""
    body = json_object(payload, provider)
    if key not in body:
        raise_vendor_message(body, provider, symbol_call=symbol_call, what=repr(key))
    return body, body[key]
