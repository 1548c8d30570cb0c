"""Logs, metrics and traces through aws-lambda-powertools, configured once per container.

Structured JSON logs carry the API Gateway request id; metrics go out as CloudWatch EMF lines
(no API calls from the Lambda); the tracer is active only where X-Ray is (it disables itself
outside Lambda and when POWERTOOLS_TRACE_DISABLED is set).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

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
    # single_metric flushes one EMF line on exit, so each metric keeps its own dimension set.
    with single_metric(name=name, unit=unit, value=value, namespace=METRICS_NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE_NAME)
        for key, val in (dimensions or {}).items():
            metric.add_dimension(name=key, value=val)
