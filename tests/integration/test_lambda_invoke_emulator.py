"""The local Invoke API, driven by boto3's Lambda client over a real socket, as the fan-out dispatch calls it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local.gateway import GatewayThread
from infra.local.lambda_invoke import AsyncInvocations, invoke_registrar
from infra.local.lambda_runtime import LambdaTimeout

pytestmark = pytest.mark.integration


class ScriptedFunction:
    """Stands in for the worker pool: records each invocation; fails the first ``fail_times`` of each."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, dict[str, Any]]] = []
        self.fail_times: dict[str, int] = {}

    async def __call__(self, event: dict[str, Any], *, handler: str | None = None) -> dict[str, Any]:
        self.calls.append((handler, event))
        key = json.dumps(event, sort_keys=True)
        if self.fail_times.get(key, 0) > 0:
            self.fail_times[key] -= 1
            if event.get("timeout"):
                raise LambdaTimeout("Task timed out after 1.00 seconds")
            raise RuntimeError("worker crashed")
        return {"handled": event}


@pytest.fixture
def function() -> ScriptedFunction:
    return ScriptedFunction()


@pytest.fixture
def invocations(function: ScriptedFunction) -> AsyncInvocations:
    return AsyncInvocations({"fanout_worker": "fanout_worker"}, function, retry_delays=(0.05, 0.1))


@pytest.fixture
def lambda_client(invocations: AsyncInvocations) -> Iterator[Any]:
    app = web.Application()
    invoke_registrar(invocations)(app)
    with GatewayThread(app) as gateway:
        yield boto3.client(
            "lambda", endpoint_url=gateway.url, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}),
        )  # fmt: skip


def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition()


def test_an_event_invocation_is_accepted_at_once_and_runs_the_named_function(
    lambda_client: Any, function: ScriptedFunction
) -> None:
    answer = lambda_client.invoke(
        FunctionName="market-data-local-fanout_worker", InvocationType="Event", Payload=b'{"round": 7, "shard": 3}'
    )
    assert answer["StatusCode"] == 202
    _wait_for(lambda: len(function.calls) == 1)
    assert function.calls == [("fanout_worker", {"round": 7, "shard": 3})]


def test_a_failing_event_is_retried_twice_then_given_to_the_on_failure_destination(
    lambda_client: Any, function: ScriptedFunction, invocations: AsyncInvocations
) -> None:
    function.fail_times[json.dumps({"shard": 1}, sort_keys=True)] = 1  # fails once, then succeeds
    function.fail_times[json.dumps({"shard": 2}, sort_keys=True)] = 5  # never succeeds
    for shard in (1, 2):
        lambda_client.invoke(FunctionName="fanout_worker", InvocationType="Event", Payload=json.dumps({"shard": shard}))
    _wait_for(lambda: invocations.completed == 1 and len(invocations.failures) == 1)
    assert [event for _, event in function.calls].count({"shard": 1}) == 2
    assert [event for _, event in function.calls].count({"shard": 2}) == 3, "one try and Lambda's two retries"
    (failure,) = invocations.failures
    assert (failure.payload, failure.condition, failure.attempts) == ({"shard": 2}, "RetriesExhausted", 3)
    assert "worker crashed" in failure.error


def test_a_timed_out_attempt_counts_as_a_failure_too(
    lambda_client: Any, function: ScriptedFunction, invocations: AsyncInvocations
) -> None:
    function.fail_times[json.dumps({"timeout": True}, sort_keys=True)] = 1
    lambda_client.invoke(FunctionName="fanout_worker", InvocationType="Event", Payload=b'{"timeout": true}')
    _wait_for(lambda: invocations.completed == 1)
    assert len(function.calls) == 2
    assert invocations.failures == []


def test_an_event_older_than_the_maximum_age_is_not_run_again(function: ScriptedFunction) -> None:
    invocations = AsyncInvocations({"fanout_worker": "fanout_worker"}, function, retry_delays=(0.2,))
    invocations.max_event_age_seconds = 0.1
    function.fail_times[json.dumps({"shard": 9}, sort_keys=True)] = 5

    async def scenario() -> None:
        await invocations._run_async("fanout_worker", "fanout_worker", {"shard": 9}, queued_at=time.monotonic())

    asyncio.run(scenario())
    (failure,) = invocations.failures
    assert (failure.condition, failure.attempts) == ("EventAgeExceeded", 1)


def test_request_response_returns_the_result_or_the_function_error(
    lambda_client: Any, function: ScriptedFunction
) -> None:
    answer = lambda_client.invoke(FunctionName="fanout_worker", Payload=b'{"x": 1}')
    assert answer["StatusCode"] == 200
    assert json.loads(answer["Payload"].read()) == {"handled": {"x": 1}}
    function.fail_times[json.dumps({"x": 2}, sort_keys=True)] = 1
    failed = lambda_client.invoke(FunctionName="fanout_worker", Payload=b'{"x": 2}')
    assert failed["FunctionError"] == "Unhandled"
    assert json.loads(failed["Payload"].read())["errorMessage"] == "worker crashed"


def test_unknown_functions_and_oversized_events_are_refused_as_lambda_does(lambda_client: Any) -> None:
    with pytest.raises(ClientError) as unknown:
        lambda_client.invoke(FunctionName="no_such_function", InvocationType="Event", Payload=b"{}")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"
    big = json.dumps({"pad": "x" * (256 * 1024)})
    with pytest.raises(ClientError) as too_large:
        lambda_client.invoke(FunctionName="fanout_worker", InvocationType="Event", Payload=big)
    assert too_large.value.response["Error"]["Code"] == "RequestTooLargeException"


def test_the_apps_fanout_worker_is_served_under_its_chalice_name() -> None:
    from infra.local.lambda_runtime import lambda_functions

    assert lambda_functions() == {"fanout_worker": "fanout_worker"}


def test_the_pool_can_start_every_worker_before_the_first_invocation() -> None:
    from infra.local.lambda_runtime import LambdaPool

    pool = LambdaPool(workers=2)
    try:
        answered = pool.start_all()
        assert 1 <= answered <= 2
        assert len(pool._executor._processes or {}) == 2, "both workers started (and imported app.py) up front"
    finally:
        pool.close()
