"""The Chalice app under `chalice.test.Client`, wired to the suite's own Redis and the replay source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import redis
from chalice.local import LocalGatewayAuthorizer
from chalice.test import Client
from moto import mock_aws

import app as app_module
from chalicelib import bootstrap
from chalicelib.settings import load_settings
from infra.local.replay.transport import YahooReplayTransport
from infra.local.tables import create_tables
from infra.local.token import issue_dev_token
from tests.fakes.broadcaster import RecordingBroadcaster

# Chalice's test client runs the API Gateway authorizer (app.jwt_authorizer) before a view, like the
# gateway does, but answers its refusals with its own bodies where API Gateway answers with the gateway
# responses of infra/template.yaml. The tests here check what the handlers answer, their own token
# verification included (the defence behind the authorizer, and all the local stack has), so the
# client admits every request to the view; test_gateway_authorizer.py runs the authorizer explicitly.
RUN_AUTHORIZER = LocalGatewayAuthorizer.authorize


@pytest.fixture(autouse=True)
def _handlers_verify_tokens_themselves(monkeypatch: pytest.MonkeyPatch) -> None:
    def admit(self: LocalGatewayAuthorizer, raw_path: str, event: dict[str, object], context: object) -> object:
        return event, context

    monkeypatch.setattr(LocalGatewayAuthorizer, "authorize", admit)


@pytest.fixture
def replay_transport() -> YahooReplayTransport:
    return YahooReplayTransport()


@pytest.fixture
def broadcaster() -> RecordingBroadcaster:
    return RecordingBroadcaster()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process, with the tables of infra/template.yaml (stage local)."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        create_tables(boto3.client("dynamodb", region_name="us-east-1"), "local")
        yield


def app_settings_env(redis_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "STAGE": "local",
        "MARKET_DATA_SOURCE": "replay",
        "REDIS_URL": redis_url,
        "CACHE_KEY_PREFIX": "app:",
        "YFINANCE_CACHE_DIR": str(tmp_path / "yfinance"),
        **extra,
    }


@pytest.fixture
def client(
    aws: None,
    redis_url: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    replay_transport: YahooReplayTransport,
    broadcaster: RecordingBroadcaster,
) -> Iterator[Client]:
    settings = load_settings(app_settings_env(redis_url, tmp_path))
    bootstrap.use_container(bootstrap.Container(settings, replay_transport=replay_transport, broadcaster=broadcaster))
    # stage "local": the default stage (dev) applies the dev config, which refuses the public dev secret.
    with Client(app_module.app, stage_name="local") as test_client:
        yield test_client
    bootstrap.use_container(None)


@pytest.fixture
def auth_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_dev_token()}"}
