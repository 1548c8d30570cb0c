"""The invocation's deadline, read from the Lambda context: one small module, so both the HTTP glue
and the scheduled jobs' glue use it without importing each other."""

from __future__ import annotations

import time
from typing import Any


def remaining_deadline(lambda_context: Any) -> float | None:
    """The invocation's deadline as a monotonic time, from the Lambda context."""
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + float(remaining()) / 1000.0
