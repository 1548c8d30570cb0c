"""Logs, metrics and traces through aws-lambda-powertools, configured once per container.

Structured JSON logs carry the API Gateway request id; metrics go out as CloudWatch EMF lines
(no API calls from the Lambda).

Tracing costs nothing when it is off: Powertools' ``Tracer()`` imports the X-Ray SDK (and botocore
under it) at construction even when disabled, so it is built on the first traced request only, and
only when tracing is on (in Lambda, POWERTOOLS_TRACE_DISABLED unset or false: Powertools' own rule).
It is built with ``auto_patch=False``: ``patch_all`` would import every library X-Ray can patch.
Instead each adapter asks for its own library to be patched where it builds its client
(``trace_library``), so a traced boto3 or requests call gets its subsegment, and an untraced function
imports neither. The X-Ray SDK may be absent from the function zip when tracing is off (it ships in a
layer): nothing here imports it then.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from typing import Any

# Importing Tracer is cheap (Powertools' package imports it anyway); constructing one is what imports
# the X-Ray SDK, hence tracer() below.
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

SERVICE_NAME = "market-data"
METRICS_NAMESPACE = "MarketData"

logger = Logger(service=SERVICE_NAME)


def tracing_enabled() -> bool:
    """Powertools' rule, read without importing the tracer: on in Lambda unless POWERTOOLS_TRACE_DISABLED
    is true; off outside Lambda, under SAM local and `chalice local`."""
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "false").strip().lower() in {"1", "y", "yes", "t", "true", "on"}:
        return False
    if not os.environ.get("LAMBDA_TASK_ROOT"):
        return False
    return not (os.environ.get("AWS_SAM_LOCAL") or os.environ.get("AWS_CHALICE_CLI_MODE"))


@functools.cache
def tracer() -> Tracer:
    """The container's tracer, built on first use (only ever called with tracing on)."""
    return Tracer(service=SERVICE_NAME, auto_patch=False)


_patched: set[str] = set()
_patch_lock = threading.Lock()


def trace_library(name: str) -> None:
    """Patch ``name`` (``botocore``, ``requests``) for X-Ray, once, if tracing is on; else nothing.
    Called by the adapter that is about to use the library, so only used libraries are imported."""
    if not tracing_enabled() or name in _patched:
        return
    with _patch_lock:
        if name not in _patched:
            tracer().patch([name])
            _patched.add(name)


@contextlib.contextmanager
def subsegment(name: str) -> Iterator[Any]:
    """An X-Ray subsegment around a block when tracing is on; a no-op (no import) when it is off."""
    if not tracing_enabled():
        yield None
        return
    with tracer().provider.in_subsegment(name) as segment:
        yield segment


def count(name: str, *, dimensions: dict[str, str] | None = None, value: float = 1) -> None:
    """Emit one EMF count metric now, with its own dimensions (e.g. CacheHit by data kind)."""
    _emit(name, MetricUnit.Count, value, dimensions)


def milliseconds(name: str, value: float, *, dimensions: dict[str, str] | None = None) -> None:
    _emit(name, MetricUnit.Milliseconds, value, dimensions)


_emf = threading.local()


def _thread_provider() -> AmazonCloudWatchEMFProvider:
    provider: AmazonCloudWatchEMFProvider | None = getattr(_emf, "provider", None)
    if provider is None:
        provider = AmazonCloudWatchEMFProvider(namespace=METRICS_NAMESPACE)
        _emf.provider = provider
    return provider


def _emit(name: str, unit: MetricUnit, value: float, dimensions: dict[str, str] | None) -> None:
    # One EMF line per metric, from a provider of the thread's own (thread-safe: fan-out threads emit
    # too), so each metric keeps its own dimension set. The provider is reused (building one costs more
    # than the line it writes, and a cached request writes three): a flush clears it, and so does
    # the start of each use, in case a failed one left something behind. A metric with dimensions of
    # its own (route, kind, provider, job) is also published under `service` alone, in the same line:
    # the whole-service alarms (5xx rate, cache hit rate, providers) read that rollup with plain metric
    # math. A metric must never fail the request that emits it.
    try:
        provider = _thread_provider()
        provider.clear_metrics()
        provider.add_metric(name=name, unit=unit, value=value)
        provider.add_dimension(name="service", value=SERVICE_NAME)
        for key, val in (dimensions or {}).items():
            provider.add_dimension(name=key, value=val)
        if dimensions:
            provider.add_dimensions(service=SERVICE_NAME)
        provider.flush_metrics()
    except Exception as exc:  # anything: see above
        logger.warning("metric not emitted", extra={"metric": name, "error": f"{type(exc).__name__}: {exc}"[:200]})
