"""Shared fixtures: a Redis server of our own and a clean environment per test.

Tests never touch a Redis they did not start: the session starts `redis-server` on a free port in a
temporary directory (persistence off) and stops it at the end, so flushing it is always safe.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.redis_counting import CountingConnection
from tests.redis_server import own_redis

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with own_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on our own server, emptied before each test (the server is ours alone)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture
def counting_client(redis_url: str, redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """A client on the suite's server whose round trips are counted (health checks off: no extra PINGs)."""
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool, health_check_interval=0)
    client.ping()  # connect first: the handshake is not part of what is measured
    CountingConnection.writes = 0
    yield client
    client.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Remove every variable the service reads, so a developer's shell cannot leak into a test."""
    from chalicelib.settings import ENV_VARS

    for var in [*ENV_VARS, "AWS_DEFAULT_REGION"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return monkeypatch


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "MarketData")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "market-data")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
