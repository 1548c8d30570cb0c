"""The value parsers every vendor's datasets share: vendor JSON values onto plain Python values.

Vendors spell "no value" many ways ("None", "-", "N/A", "nan", ""), send numbers as JSON numbers or as
strings ("112.1300", "-0.5852%", "(+0.35%)", "1,234"), and times as epoch seconds. One reading for all.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from chalicelib.errors import ProviderParseError

NULL_STRINGS = frozenset({"", "none", "null", "-", "n/a", "nan"})


def text(value: object) -> str | None:
    """A vendor string, stripped; placeholders and non-strings: None."""
    if not isinstance(value, str):
        return None
    stripped = value.strip()
    return None if stripped.lower() in NULL_STRINGS else stripped


def first_text(item: Mapping[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` holding a real string (vendors fill one of several alternative fields)."""
    for key in keys:
        found = text(item.get(key))
        if found is not None:
            return found
    return None


def first_value(item: Mapping[str, Any], *keys: str) -> object:
    """The first of ``keys`` present with a non-placeholder value (two API generations spell it apart)."""
    for key in keys:
        value = item.get(key)
        if value is not None and not (isinstance(value, str) and value.strip().lower() in NULL_STRINGS):
            return value
    return None


def json_number(value: object) -> float | None:
    """A JSON number (not a bool, not a string) as a float; anything else: None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def number(value: object, *, strict: bool = False) -> float | None:
    """A JSON number or a numeric string as a float; placeholders: None. Anything else is None, or with
    ``strict`` a ValueError (for vendors whose every value must be a number-string, Alpha Vantage)."""
    found = json_number(value)
    if found is not None:
        return found
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.lower() in NULL_STRINGS:
            return None
        try:
            return float(stripped.strip("()").removesuffix("%").replace(",", "").strip())
        except ValueError:
            if strict:
                raise
            return None
    if strict and value is not None:
        raise ValueError(f"not a number: {str(value)[:40]!r}")
    return None


def integer(value: object, *, strict: bool = False) -> int | None:
    found = number(value, strict=strict)
    return int(found) if found is not None else None


def epoch(value: object) -> datetime | None:
    """Epoch seconds (a JSON number) as a UTC datetime; anything else, or out of range: None."""
    seconds = json_number(value)
    if seconds is None:
        return None
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def json_object(payload: object, provider: str, what: str = "payload") -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ProviderParseError(provider, f"{what}: expected a JSON object, got {type(payload).__name__}")
    return payload


def expect_list(payload: object, provider: str, what: str) -> list[dict[str, Any]]:
    """The JSON array of objects a vendor documents for ``what``."""
    if not isinstance(payload, list):
        raise ProviderParseError(provider, f"{what}: expected a JSON array, got {type(payload).__name__}")
    for item in payload:
        if not isinstance(item, dict):
            raise ProviderParseError(provider, f"{what}: an item is not a JSON object")
    return payload
