"""What every Redis adapter shares: one client per container, and degrading instead of failing.

Redis being unreachable must degrade the service, not fail it: every operation catches Redis errors,
and after one failure the adapter stops trying for a short back-off so a request does not pay a socket
timeout per call.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from typing import Required, TypedDict, TypeVar, Unpack

import redis
from aws_lambda_powertools import Logger

logger = Logger(child=True)

REDIS_FAILURES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)

T = TypeVar("T")

_SAFE_SUBJECT = re.compile(r"^[A-Za-z0-9@._\-|:]{1,128}$")


def subject_key(subject: str) -> str:
    """JWT subjects are arbitrary strings: keep readable ones, hash the rest (bounded, no key injection)."""
    if _SAFE_SUBJECT.match(subject):
        return subject
    return "sha256-" + hashlib.sha256(subject.encode()).hexdigest()


def redis_client(url: str, *, socket_timeout_seconds: float) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout_seconds,
        socket_connect_timeout=socket_timeout_seconds,
        health_check_interval=30,
        # Our own back-off handles outages; redis-py's retries would multiply the socket timeout.
        retry_on_timeout=False,
    )


class RedisOptions(TypedDict, total=False):
    """What every Redis adapter takes: its key prefix, a wall clock (tests), and how long it stops trying
    after a failure (5 s)."""

    key_prefix: Required[str]
    clock: Callable[[], float]
    retry_after_failure_seconds: float


class DegradingRedisAdapter:
    """Base for Redis adapters: tracks an outage back-off shared by the adapter's operations."""

    def __init__(self, client: redis.Redis, **options: Unpack[RedisOptions]) -> None:
        self._client = client
        self._prefix = options["key_prefix"]
        self._clock = options.get("clock", time.time)
        self._retry_after_failure = options.get("retry_after_failure_seconds", 5.0)
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, operation: str, exc: Exception) -> None:
        if self.available:
            logger.warning(
                "redis unreachable; degrading",
                extra={
                    "adapter": type(self).__name__,
                    "operation": operation,
                    "error": type(exc).__name__,
                    "detail": str(exc)[:200],
                },
            )
        self._down_until = time.monotonic() + self._retry_after_failure

    def _key(self, key: str) -> str:
        return self._prefix + key

    def _guarded(self, operation: str, call: Callable[[], T], fallback: T) -> T:
        """``call()``, or ``fallback`` while Redis is down (no socket timeout paid) or when this call
        finds it down (which starts the back-off). The one place the adapters degrade."""
        if not self.available:
            return fallback
        try:
            return call()
        except REDIS_FAILURES as exc:
            self._failed(operation, exc)
            return fallback
