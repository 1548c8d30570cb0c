"""What the DynamoDB adapters' contract tests share: moto tables, a recording client, a dead endpoint.

The tables come from infra/template.yaml (through infra.local.tables), so the tests run against the
keys and indexes that are deployed. The template's Stage allows only local/dev/prod, so the tests use
the ``local`` tables.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from infra.local.run import free_port
from infra.local.tables import create_tables, table_definitions

REGION = "us-east-1"
LOCAL_TABLES = {d.logical_id: d.table_name for d in table_definitions("local")}  # logical id → table name


@contextmanager
def moto_tables(*expected: str) -> Iterator[Any]:
    """A boto3 DynamoDB client on in-process moto with every table of the template created (checking
    that the ``expected`` table names are among them)."""
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        names = create_tables(client, "local")
        for name in expected:
            assert name in names
        yield client


def table_fixtures(*expected: str) -> tuple[Callable[..., Iterator[Any]], Callable[..., RecordingClient]]:
    """The fixtures ``dynamodb`` (a client on moto_tables(*expected), with clean_env) and ``recorder``
    (a RecordingClient around it), for a test module to bind: ``dynamodb, recorder = table_fixtures(...)``."""

    @pytest.fixture(name="dynamodb")
    def dynamodb(clean_env: pytest.MonkeyPatch) -> Iterator[Any]:
        with moto_tables(*expected) as client:
            yield client

    @pytest.fixture(name="recorder")
    def recorder(dynamodb: Any) -> RecordingClient:
        return RecordingClient(dynamodb)

    return dynamodb, recorder


def unreachable_client() -> Any:
    """A boto3 DynamoDB client for a local port nothing listens on: short timeouts, no retries."""
    return boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        config=Config(connect_timeout=0.5, read_timeout=0.5, retries={"total_max_attempts": 1, "mode": "standard"}),
    )


class RecordingClient:
    """Delegates to a boto3 client and records operation names and parameters; can fake throttling."""

    def __init__(self, client: Any, *, unprocessed_rounds: int = 0) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.unprocessed_rounds = unprocessed_rounds

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**params: Any) -> Any:
            self.calls.append((name, params))
            if name == "batch_write_item" and self.unprocessed_rounds > 0:
                self.unprocessed_rounds -= 1
                # GIVEN throttling: write the first request, hand back the rest unprocessed.
                (table, requests), *_ = params["RequestItems"].items()
                method(RequestItems={table: requests[:1]})
                rest = requests[1:]
                return {"UnprocessedItems": {table: rest} if rest else {}}
            return method(**params)

        return call

    def operations(self) -> list[str]:
        return [name for name, _ in self.calls]


class SerializedClient:
    """Delegates to a boto3 client one request at a time, as DynamoDB applies each request atomically:
    moto's in-process backend has no locking, so two threads could interleave inside one conditional
    write, which real DynamoDB never does. Races between requests (what the code must handle) still
    happen: ``pause`` seconds after each request hand the turn to another thread."""

    def __init__(self, client: Any, *, pause: float = 0.002) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._pause = pause

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(**params: Any) -> Any:
            with self._lock:
                result = method(**params)
            time.sleep(self._pause)
            return result

        return call


@contextmanager
def dynamodb_operations(client: Any) -> Iterator[list[str]]:
    """The DynamoDB operations (``Scan``, ``Query``, ...) ``client`` sends while the block runs, recorded
    by a botocore ``before-call`` hook: at the SDK boundary, whatever wraps the client."""
    seen: list[str] = []

    def record(model: Any, **_: Any) -> None:
        seen.append(model.name)

    client.meta.events.register("before-call.dynamodb", record)
    try:
        yield seen
    finally:
        client.meta.events.unregister("before-call.dynamodb", record)
