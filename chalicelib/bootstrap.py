"""The container of this Lambda container (process): built on first use from the environment, then
reused by warm invocations. Tests replace it (`use_container`); the local stack installs the offline
replay transport first (`install_replay_transport`). What a container builds: chalicelib/container.py.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from chalicelib import lazy
from chalicelib.container import Container
from chalicelib.settings import load_settings

if TYPE_CHECKING:
    from requests.adapters import BaseAdapter

    from chalicelib.adapters import aws_clients, secrets
else:  # botocore (their import) only when a container is built (chalicelib/lazy.py)
    aws_clients = lazy.module("chalicelib.adapters.aws_clients")
    secrets = lazy.module("chalicelib.adapters.secrets")

__all__ = ["Container", "container", "install_replay_transport", "use_container"]

_lock = threading.Lock()
_container: Container | None = None
_replay_transport: BaseAdapter | None = None


def install_replay_transport(transport: BaseAdapter) -> None:
    """Called by the local stack before the first invocation; the next container built uses it."""
    global _replay_transport, _container
    with _lock:
        _replay_transport = transport
        _container = None


def container() -> Container:
    """The container of this Lambda container: built on first use, validated once, then reused."""
    global _container
    with _lock:
        if _container is None:
            _container = Container(load_settings(_environment_with_secrets()), replay_transport=_replay_transport)
        return _container


def _environment_with_secrets() -> dict[str, str]:
    """os.environ with the *_SECRET_ARN values fetched from Secrets Manager (deployed stages only)."""

    def client() -> Any:  # only called when a secret ARN is set (deployed stages)
        return aws_clients.standard_client(
            "secretsmanager",
            os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            read_timeout_seconds=3,
        )

    return secrets.resolve_secrets(os.environ, client)


def use_container(replacement: Container | None) -> None:
    """Tests: serve the next invocations from ``replacement`` (None rebuilds from the environment)."""
    global _container
    with _lock:
        _container = replacement
