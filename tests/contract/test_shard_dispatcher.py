"""ShardDispatcher contract: the Lambda adapter (through the local Invoke API over a real socket) and the
in-process fake deliver each shard task to the worker exactly once, and a refused invoke is reported."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore.config import Config

from chalicelib.adapters.lambda_dispatcher import LambdaShardDispatcher
from chalicelib.ports import ShardDispatcher, ShardTask
from infra.local.gateway import GatewayThread
from infra.local.lambda_invoke import AsyncInvocations, invoke_registrar
from tests.fakes.dispatcher import InlineShardDispatcher

Received = list[tuple[str, int]]


@pytest.fixture
def gateway_url(received: Received) -> Iterator[str]:
    async def worker(event: dict[str, Any], *, handler: str | None = None) -> dict[str, Any]:
        assert handler == "fanout_worker"
        received.append((event["round"], event["shard"]))
        return {}

    app = web.Application()
    invoke_registrar(AsyncInvocations({"fanout_worker": "fanout_worker"}, worker))(app)
    with GatewayThread(app) as gateway:
        yield gateway.url


@pytest.fixture
def received() -> Received:
    return []


def _lambda_dispatcher(url: str, function: str = "market-data-local-fanout_worker") -> LambdaShardDispatcher:
    client = boto3.client(
        "lambda", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip
    return LambdaShardDispatcher(client, function, concurrency=4, max_attempts=1)


@pytest.fixture(params=["lambda", "inline"])
def dispatcher(request: pytest.FixtureRequest, gateway_url: str, received: Received) -> ShardDispatcher:
    if request.param == "lambda":
        return _lambda_dispatcher(gateway_url)
    return InlineShardDispatcher(lambda task: received.append((task.round_id, task.shard)))


def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_each_shard_task_reaches_the_worker_once(dispatcher: ShardDispatcher, received: Received) -> None:
    tasks = [ShardTask("round-1", shard) for shard in (0, 3, 7, 15)]
    report = dispatcher.dispatch(tasks)
    assert (report.dispatched, report.failed) == (4, ())
    _eventually(lambda: len(received) == 4)
    assert sorted(received) == [("round-1", 0), ("round-1", 3), ("round-1", 7), ("round-1", 15)]


def test_nothing_to_dispatch_is_no_call(dispatcher: ShardDispatcher, received: Received) -> None:
    assert dispatcher.dispatch([]).dispatched == 0
    assert received == []


def test_a_refused_invoke_is_reported_not_raised(gateway_url: str) -> None:
    dispatcher = _lambda_dispatcher(gateway_url, function="market-data-local-no_such_worker")
    report = dispatcher.dispatch([ShardTask("round-2", 1), ShardTask("round-2", 2)])
    assert (report.dispatched, report.failed) == (0, (1, 2))
