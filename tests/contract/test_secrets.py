"""Secrets resolved at cold start from Secrets Manager (moto in-process), and refused as plain
environment variables in prod."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.secrets import resolve_secrets
from chalicelib.errors import ConfigurationError
from chalicelib.settings import load_settings


@pytest.fixture
def secrets(clean_env: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def _secret(client: Any, name: str, value: dict[str, str]) -> str:
    arn: str = client.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
    return arn


def test_arns_are_resolved_into_the_settings(secrets: Any) -> None:
    env = {
        "STAGE": "prod",
        "JWT_ALGORITHM": "HS256",
        "JWT_ISSUER": "https://idp.example.com/",
        "JWT_AUDIENCE": "market-data-api",
        "CORS_ALLOWED_ORIGINS": "https://dashboard.example.com",
        "REDIS_URL": "rediss://master.market-data.abc123.use1.cache.amazonaws.com:6379/0",
        "JWT_SECRET_ARN": _secret(secrets, "jwt", {"secret": "s" * 64}),
        "PROVIDER_KEYS_SECRET_ARN": _secret(
            secrets,
            "keys",
            {"ALPHA_VANTAGE_API_KEY": "av-key", "FINANCIAL_MODELING_PREP_API_KEY": "", "TIINGO_API_KEY": "ti"},
        ),
        "REDIS_AUTH_SECRET_ARN": _secret(secrets, "redis", {"username": "default", "password": "p@ss/word+="}),
    }
    resolved = resolve_secrets(env, lambda: secrets)
    settings = load_settings(resolved)
    assert settings.effective_jwt_secret == "s" * 64
    assert settings.alpha_vantage_api_key is not None
    assert settings.alpha_vantage_api_key.get_secret_value() == "av-key"
    assert settings.financial_modeling_prep_api_key is None  # empty: that provider stays out of the chain
    assert settings.tiingo_api_key is not None
    # The AUTH token goes into the TLS URL, percent-encoded.
    assert (
        settings.redis_url
        == "rediss://default:p%40ss%2Fword%2B%3D@master.market-data.abc123.use1.cache.amazonaws.com:6379/0"
    )


def test_plain_secrets_are_refused_in_prod(secrets: Any) -> None:
    with pytest.raises(ConfigurationError, match="TIINGO_API_KEY") as refused:
        resolve_secrets({"STAGE": "prod", "TIINGO_API_KEY": "plain-key-123"}, lambda: secrets)
    assert "plain-key-123" not in refused.value.message


def test_nothing_to_resolve_makes_no_call() -> None:
    def no_client() -> Any:
        raise AssertionError("no secret ARN: Secrets Manager must not be called")

    assert resolve_secrets({"STAGE": "local", "JWT_SECRET": "x" * 40}, no_client)["JWT_SECRET"] == "x" * 40


def test_an_unreadable_secret_names_the_variable_not_the_value(secrets: Any) -> None:
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf"
    with pytest.raises(ConfigurationError, match="JWT_SECRET_ARN: cannot read the secret"):
        resolve_secrets({"STAGE": "dev", "JWT_SECRET_ARN": missing}, lambda: secrets)
    wrong_shape = _secret(secrets, "flat", {"not_secret": "x"})
    with pytest.raises(ConfigurationError, match="no non-empty 'secret' key"):
        resolve_secrets({"STAGE": "dev", "JWT_SECRET_ARN": wrong_shape}, lambda: secrets)


def test_redis_auth_needs_tls(secrets: Any) -> None:
    arn = _secret(secrets, "redis2", {"password": "pw"})
    with pytest.raises(ConfigurationError, match="rediss://"):
        resolve_secrets(
            {"STAGE": "dev", "REDIS_URL": "redis://host:6379/0", "REDIS_AUTH_SECRET_ARN": arn}, lambda: secrets
        )


def test_a_malformed_arn_fails_in_settings_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="JWT_SECRET_ARN"):
        load_settings({"STAGE": "local", "JWT_SECRET_ARN": "not-an-arn"})
