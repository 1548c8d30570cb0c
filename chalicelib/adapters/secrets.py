"""Secrets from AWS Secrets Manager, read once per Lambda container (cold start) and kept in memory.

Deployed stages pass ARNs, never values: ``JWT_SECRET_ARN`` (JSON key ``secret``),
``PROVIDER_KEYS_SECRET_ARN`` (JSON with ``ALPHA_VANTAGE_API_KEY``, ``FINANCIAL_MODELING_PREP_API_KEY``,
``TIINGO_API_KEY``; an empty value leaves that provider out of the chain) and ``REDIS_AUTH_SECRET_ARN``
(JSON key ``password``: ElastiCache's AUTH token, put into ``REDIS_URL``). ``resolve_secrets`` returns
the environment with those values filled in, for ``load_settings``. In ``prod`` the plain variables
(``JWT_SECRET``, the API keys) are refused: a secret in a Lambda's environment is readable by anyone
who may read the function's configuration.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import ConfigurationError

PROVIDER_KEY_VARS = ("ALPHA_VANTAGE_API_KEY", "FINANCIAL_MODELING_PREP_API_KEY", "TIINGO_API_KEY")
PLAIN_SECRET_VARS = ("JWT_SECRET", *PROVIDER_KEY_VARS)


def _secret_json(client: Any, variable: str, arn: str) -> dict[str, Any]:
    try:
        raw = client.get_secret_value(SecretId=arn)["SecretString"]
    except (ClientError, BotoCoreError, KeyError) as exc:
        code = exc.response.get("Error", {}).get("Code", "?") if isinstance(exc, ClientError) else type(exc).__name__
        raise ConfigurationError(f"{variable}: cannot read the secret ({code})") from None
    try:
        document = json.loads(raw)
    except ValueError:
        raise ConfigurationError(f"{variable}: the secret is not a JSON object") from None
    if not isinstance(document, dict):
        raise ConfigurationError(f"{variable}: the secret is not a JSON object")
    return document


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"default:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def resolve_secrets(env: Mapping[str, str], client_factory: Callable[[], Any]) -> dict[str, str]:
    """The environment with every *_SECRET_ARN resolved (one Secrets Manager call per secret)."""
    resolved = dict(env)
    stage = (env.get("STAGE") or "local").strip()
    if stage == "prod":
        plain = [name for name in PLAIN_SECRET_VARS if (env.get(name) or "").strip()]
        if plain:
            raise ConfigurationError(
                f"{', '.join(plain)}: in prod secrets come from Secrets Manager "
                "(JWT_SECRET_ARN, PROVIDER_KEYS_SECRET_ARN), not from plain environment variables"
            )
    wanted = {
        name: (env.get(name) or "").strip()
        for name in ("JWT_SECRET_ARN", "PROVIDER_KEYS_SECRET_ARN", "REDIS_AUTH_SECRET_ARN")
    }
    if not any(wanted.values()):
        return resolved
    client = client_factory()
    if wanted["JWT_SECRET_ARN"]:
        secret = _secret_json(client, "JWT_SECRET_ARN", wanted["JWT_SECRET_ARN"]).get("secret")
        if not isinstance(secret, str) or not secret:
            raise ConfigurationError("JWT_SECRET_ARN: the secret has no non-empty 'secret' key")
        resolved["JWT_SECRET"] = secret
    if wanted["PROVIDER_KEYS_SECRET_ARN"]:
        keys = _secret_json(client, "PROVIDER_KEYS_SECRET_ARN", wanted["PROVIDER_KEYS_SECRET_ARN"])
        for name in PROVIDER_KEY_VARS:
            value = keys.get(name)
            if isinstance(value, str) and value.strip():
                resolved[name] = value.strip()
    if wanted["REDIS_AUTH_SECRET_ARN"]:
        password = _secret_json(client, "REDIS_AUTH_SECRET_ARN", wanted["REDIS_AUTH_SECRET_ARN"]).get("password")
        if not isinstance(password, str) or not password:
            raise ConfigurationError("REDIS_AUTH_SECRET_ARN: the secret has no non-empty 'password' key")
        url = (env.get("REDIS_URL") or "").strip()
        if not url.startswith("rediss://"):
            raise ConfigurationError("REDIS_URL must be rediss:// (TLS) when REDIS_AUTH_SECRET_ARN is set")
        resolved["REDIS_URL"] = _with_password(url, password)
    return resolved
