"""boto3 clients: one place sets their pools, timeouts and retries. This module (and boto3 with it) is
imported when the container first builds a client (chalicelib/lazy.py): functions that never make these
calls stay lighter at cold start."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from chalicelib import observability


def pooled_client(
    service: str, region: str, *, pool_size: int, timeout_seconds: float, endpoint_url: str | None = None
) -> Any:
    """A client whose connection pool fits the threads that share it (botocore's default is 10: more
    threads would queue for a socket), with short timeouts and botocore's own retries off (our tenacity
    retries would multiply them)."""
    config = Config(
        connect_timeout=timeout_seconds,
        read_timeout=timeout_seconds,
        max_pool_connections=pool_size,
        retries={"total_max_attempts": 1},
    )
    return _client(service, region, endpoint_url, config)


def standard_client(service: str, region: str, *, endpoint_url: str | None, read_timeout_seconds: float) -> Any:
    """A client for calls botocore retries itself (its "standard" mode, 3 attempts), 2 s to connect."""
    config = Config(
        connect_timeout=2, read_timeout=read_timeout_seconds, retries={"mode": "standard", "max_attempts": 3}
    )
    return _client(service, region, endpoint_url, config)


def _client(service: str, region: str, endpoint_url: str | None, config: Config) -> Any:
    observability.trace_library("botocore")
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url, config=config)
