"""What every Redis adapter shares: one client per container, and degrading instead of failing.

Redis being unreachable must degrade the service, not fail it: every operation catches Redis errors,
and after one failure the adapter stops trying for a short back-off so a request does not pay a socket
timeout per call.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Required, TypedDict, TypeVar, Unpack

import redis
from aws_lambda_powertools import Logger
from redis.commands.core import Script
from redis.typing import EncodableT

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


@dataclass(frozen=True)
class ScriptCall:
    """One call of a script registered with ``client.register_script``."""

    script: Script
    keys: Sequence[str]
    args: Sequence[EncodableT] = ()


def run_scripts(client: redis.Redis, calls: Sequence[ScriptCall]) -> list[Any]:
    """The calls' replies, all pipelined into one round trip as EVALSHA. Not ``script(..., client=pipe)``:
    redis-py then sends SCRIPT EXISTS before every such pipeline, a round trip of its own. A call the
    server answers NOSCRIPT (restarted or flushed since it last loaded the script) did not run: its
    script is loaded and it is retried once, in one more round trip. Other script errors raise, as a
    pipeline's ``execute`` does."""
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    replies = list(pipe.execute(raise_on_error=False))
    missing = [i for i, reply in enumerate(replies) if isinstance(reply, redis.exceptions.NoScriptError)]
    if missing:
        scripts = list({calls[i].script.sha: calls[i].script for i in missing}.values())
        retry = client.pipeline(transaction=False)
        for script in scripts:
            retry.script_load(script.script)
        for i in missing:
            retry.evalsha(calls[i].script.sha, len(calls[i].keys), *calls[i].keys, *calls[i].args)
        for i, reply in zip(missing, retry.execute(raise_on_error=False)[len(scripts) :], strict=True):
            replies[i] = reply
    for reply in replies:
        if isinstance(reply, redis.exceptions.ResponseError):
            raise reply
    return replies


class Rider(Protocol):
    """Commands that wait for the request's next round trip to Redis instead of making one of their own
    (the per-user rate limit: a cached read then costs one round trip, not two). The first pipeline
    this request executes on ``client`` carries them (``queue`` them first, ``settle`` with their
    replies; ``settle`` may end the request by raising, e.g. the budget is spent); any other Redis call
    of the request settles them first on their own (``settle_alone``), so nothing else the request does
    (a provider call, a write) happens before their outcome is known."""

    @property
    def client(self) -> redis.Redis: ...

    def queue(self, pipe: redis.client.Pipeline) -> int:
        """Queue the commands; how many."""
        ...

    def settle(self, replies: list[Any]) -> None: ...

    def settle_failed(self, exc: Exception) -> None: ...

    def settle_alone(self) -> None: ...


_riders: contextvars.ContextVar[tuple[Rider, ...]] = contextvars.ContextVar("redis_riders", default=())


@contextlib.contextmanager
def riding(rider: Rider) -> Iterator[None]:
    """While the block runs (one request, one thread), ``rider`` waits for the next round trip."""
    token = _riders.set((*_riders.get(), rider))
    try:
        yield
    finally:
        _riders.reset(token)


def withdraw(rider: Rider) -> None:
    """``rider`` stops waiting for a round trip (it is settling on its own): a Redis call it makes then
    cannot take it again, which would settle it twice."""
    waiting = _riders.get()
    if rider in waiting:
        _riders.set(tuple(r for r in waiting if r is not rider))


def _take_riders(client: redis.Redis) -> list[Rider]:
    """The riders waiting for a round trip on ``client``; they no longer wait once taken."""
    waiting = _riders.get()
    if not waiting:
        return []
    taken = [r for r in waiting if r.client is client]
    if taken:
        _riders.set(tuple(r for r in waiting if r.client is not client))
    return taken


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

    def _settle_riders_alone(self) -> None:
        for rider in _take_riders(self._client):
            rider.settle_alone()

    def _pipeline_carrying_riders(self) -> tuple[redis.client.Pipeline, list[tuple[Rider, int]]]:
        """A pipeline whose first commands are the request's riders' (taken now), with how many each
        queued; the caller queues its own after them and runs it with ``_execute_carrying``."""
        pipe = self._client.pipeline(transaction=False)
        return pipe, [(rider, rider.queue(pipe)) for rider in _take_riders(self._client)]

    def _execute_carrying(
        self, operation: str, pipe: redis.client.Pipeline, carried: list[tuple[Rider, int]]
    ) -> list[Any] | None:
        """The caller's own replies, or None when Redis cannot be reached (the riders then settle
        without it). The riders settle first; one may raise (the request ends there)."""
        try:
            replies = list(pipe.execute())
        except REDIS_FAILURES as exc:
            self._failed(operation, exc)
            for rider, _ in carried:
                rider.settle_failed(exc)
            return None
        start = 0
        for rider, count in carried:
            rider.settle(replies[start : start + count])
            start += count
        return replies[start:]

    def _guarded(self, operation: str, call: Callable[[], T], fallback: T) -> T:
        """``call()``, or ``fallback`` while Redis is down (no socket timeout paid) or when this call
        finds it down (which starts the back-off). The one place the adapters degrade."""
        self._settle_riders_alone()
        if not self.available:
            return fallback
        try:
            return call()
        except REDIS_FAILURES as exc:
            self._failed(operation, exc)
            return fallback
