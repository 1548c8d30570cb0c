"""Logs, metrics and traces through aws-lambda-powertools, configured once per container.

Structured JSON logs carry the API Gateway request id; metrics go out as CloudWatch EMF lines
(no API calls from the Lambda); the tracer is active only where X-Ray is (it disables itself
outside Lambda and when POWERTOOLS_TRACE_DISABLED is set).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

SERVICE_NAME = "market-data"
METRICS_NAMESPACE = "MarketData"

logger = Logger(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)


def count(name: str, *, dimensions: dict[str, str] | None = None, value: float = 1) -> None:
    """Emit one EMF count metric now, with its own dimensions (e.g. CacheHit by data kind)."""
    _emit(name, MetricUnit.Count, value, dimensions)


def milliseconds(name: str, value: float, *, dimensions: dict[str, str] | None = None) -> None:
    _emit(name, MetricUnit.Milliseconds, value, dimensions)


def _emit(name: str, unit: MetricUnit, value: float, dimensions: dict[str, str] | None) -> None:
    # One EMF line per metric, from a provider of its own (thread-safe: fan-out threads emit too), so
    # each metric keeps its own dimension set. A metric with dimensions of its own (route, kind,
    # provider, job) is also published under `service` alone, in the same line: the whole-service
    # alarms (5xx rate, cache hit rate, providers) read that rollup with plain metric math.
    # A metric must never fail the request that emits it.
    try:
        provider = AmazonCloudWatchEMFProvider(namespace=METRICS_NAMESPACE)
        provider.add_metric(name=name, unit=unit, value=value)
        provider.add_dimension(name="service", value=SERVICE_NAME)
        for key, val in (dimensions or {}).items():
            provider.add_dimension(name=key, value=val)
        if dimensions:
            provider.add_dimensions(service=SERVICE_NAME)
        provider.flush_metrics()
    except Exception as exc:  # anything: see above
        logger.warning("metric not emitted", extra={"metric": name, "error": f"{type(exc).__name__}: {exc}"[:200]})
