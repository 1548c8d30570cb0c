"""The Chalice app under `chalice.test.Client`, wired to the suite's own Redis and the replay source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.settings import load_settings
from infra.local.replay.transport import YahooReplayTransport
from infra.local.token import issue_dev_token


@pytest.fixture
def replay_transport() -> YahooReplayTransport:
    return YahooReplayTransport()


@pytest.fixture
def client(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path, replay_transport: YahooReplayTransport
) -> Iterator[Client]:
    settings = load_settings(
        {
            "STAGE": "local",
            "MARKET_DATA_SOURCE": "replay",
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": "app:",
            "YFINANCE_CACHE_DIR": str(tmp_path / "yfinance"),
        }
    )
    bootstrap.use_container(bootstrap.Container(settings, replay_transport=replay_transport))
    # stage "local": the default stage (dev) applies the dev config, which refuses the public dev secret.
    with Client(app_module.app, stage_name="local") as test_client:
        yield test_client
    bootstrap.use_container(None)


@pytest.fixture
def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_dev_token()}"}
