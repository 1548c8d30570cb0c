"""Configuration failures: clear for the operator (the log names the variable), opaque to the client."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from chalice.test import Client

import app as app_module
from chalicelib import bootstrap
from chalicelib.errors import ConfigurationError
from chalicelib.settings import load_settings
from infra.local.token import issue_dev_token


@pytest.fixture
def fresh_container() -> Iterator[None]:
    bootstrap.use_container(None)
    yield
    bootstrap.use_container(None)


def test_replay_without_the_local_transport_is_refused() -> None:
    settings = load_settings({"STAGE": "local", "MARKET_DATA_SOURCE": "replay"})
    with pytest.raises(ConfigurationError, match="infra/local/replay"):
        bootstrap.Container(settings)  # what a deployed package would do: the transport is not in it


def test_a_bad_variable_is_logged_by_name_and_hidden_from_the_client(
    clean_env: pytest.MonkeyPatch, fresh_container: None, caplog: pytest.LogCaptureFixture
) -> None:
    token = issue_dev_token()  # signed while the configuration is still valid
    clean_env.setenv("REDIS_URL", "http://not-redis:6379")

    with Client(app_module.app, stage_name="local") as client:
        response = client.http.get("/api/v1/market/quote/AAPL", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 500
    error = json.loads(response.body)["error"]
    assert error["code"] == "configuration_error"
    assert "REDIS_URL" not in error["message"]
    logged = next(record for record in caplog.records if record.getMessage() == "configuration error")
    assert "REDIS_URL" in logged.__dict__["detail"]


def test_the_container_is_built_once_per_lambda_container(clean_env: pytest.MonkeyPatch, fresh_container: None) -> None:
    first = bootstrap.container()
    assert bootstrap.container() is first
