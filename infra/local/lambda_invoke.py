"""Lambda's Invoke API for the local stack: what boto3's `lambda.invoke` calls, fed to the same worker pool.

The deployed fan-out dispatches one asynchronous invocation (``InvocationType="Event"``) per shard of an
`@app.lambda_function`; locally the job's boto3 client points at the gateway (``AWS_LAMBDA_ENDPOINT_URL``)
and this route runs the function in the LambdaPool, so a local run exercises the deployed design end to
end. What AWS does and this does too:

- ``POST /2015-03-31/functions/{FunctionName}/invocations``; the name may be the short Chalice name
  (``fanout_worker``), the deployed one (``market-data-local-fanout_worker``) or its ARN.
- ``Event``: 202 at once, the invocation queued; a failed invocation (exception or timeout) is retried
  twice with a delay (AWS: about 1 and 2 minutes; here ``retry_delays``), then handed to the on-failure
  destination (here: kept in ``failures`` and logged, as the SQS destination would hold it). An event
  older than ``max_event_age_seconds`` is dropped to the destination instead of run.
- ``RequestResponse`` (the default): 200 with the function's result, or 200 with ``X-Amz-Function-Error:
  Unhandled`` and the error document. ``DryRun``: 204.
- Unknown function: 404 ``ResourceNotFoundException``; a payload over 256 KB (async) or 6 MB (sync):
  413 ``RequestTooLargeException``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

logger = logging.getLogger(__name__)

INVOKE_PATH = "/2015-03-31/functions/{function}/invocations"
ASYNC_PAYLOAD_LIMIT = 256 * 1024
SYNC_PAYLOAD_LIMIT = 6 * 1024 * 1024
DEFAULT_RETRY_DELAYS = (1.0, 2.0)
DEFAULT_MAX_EVENT_AGE_SECONDS = 60.0

Invoke = Callable[..., Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class FailedEvent:
    """What the on-failure destination receives: the request, why it failed, how often it was tried."""

    function: str
    payload: dict[str, Any]
    condition: str  # "RetriesExhausted" or "EventAgeExceeded", as Lambda's destination record says
    error: str
    attempts: int


@dataclass
class AsyncInvocations:
    """The Invoke API of one gateway: function name → handler attribute of the app module."""

    functions: Mapping[str, str]
    invoke: Invoke
    app_name: str = "market-data"
    stage: str = "local"
    retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS
    max_event_age_seconds: float = DEFAULT_MAX_EVENT_AGE_SECONDS
    failures: list[FailedEvent] = field(default_factory=list)
    completed: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def handler_for(self, name: str) -> tuple[str, str] | None:
        """(short name, handler attribute) for a short name, a deployed name or an ARN."""
        short = name.rsplit(":function:", 1)[-1].split(":", 1)[0]
        short = short.removeprefix(f"{self.app_name}-{self.stage}-")
        handler = self.functions.get(short)
        return (short, handler) if handler else None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["function"]
        target = self.handler_for(name)
        request_id = str(uuid.uuid4())
        if target is None:
            return _error(404, "ResourceNotFoundException", f"Function not found: {name}", request_id)
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        body = await request.read()
        limit = ASYNC_PAYLOAD_LIMIT if kind == "Event" else SYNC_PAYLOAD_LIMIT
        if len(body) > limit:
            message = f"Request must be smaller than {limit} bytes for the InvokeFunction operation"
            return _error(413, "RequestTooLargeException", message, request_id)
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return _error(400, "InvalidRequestContentException", "Could not parse request body into json", request_id)
        short, handler = target
        if kind == "DryRun":
            return web.Response(status=204, headers={"x-amzn-RequestId": request_id})
        if kind == "Event":
            task = asyncio.create_task(self._run_async(short, handler, payload, queued_at=time.monotonic()))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return web.Response(status=202, headers={"x-amzn-RequestId": request_id})
        try:
            result = await self.invoke(payload, handler=handler)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            document = {"errorMessage": str(exc), "errorType": type(exc).__name__}
            return web.json_response(
                document, headers={"X-Amz-Function-Error": "Unhandled", "x-amzn-RequestId": request_id}
            )
        return web.json_response(result, headers={"x-amzn-RequestId": request_id})

    async def _run_async(self, short: str, handler: str, payload: dict[str, Any], *, queued_at: float) -> None:
        error = ""
        attempts = 0
        for delay in (0.0, *self.retry_delays):
            if delay:
                await asyncio.sleep(delay)
            if time.monotonic() - queued_at > self.max_event_age_seconds:
                self._fail(FailedEvent(short, payload, "EventAgeExceeded", error or "event too old", attempts))
                return
            attempts += 1
            try:
                await self.invoke(payload, handler=handler)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                error = f"{type(exc).__name__}: {exc}"
                logger.warning("async invocation of %s failed (attempt %d): %s", short, attempts, error)
                continue
            self.completed += 1
            return
        self._fail(FailedEvent(short, payload, "RetriesExhausted", error, attempts))

    def _fail(self, event: FailedEvent) -> None:
        logger.error("async invocation of %s sent to the on-failure destination: %s", event.function, event.error)
        self.failures.append(event)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait for queued async invocations (tests and shutdown)."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def shutdown(self, _app: web.Application) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _error(status: int, kind: str, message: str, request_id: str) -> web.Response:
    # The shape boto3 reads a Lambda error from: the type in a header and the message in the body.
    return web.json_response(
        {"Type": "User", "message": message},
        status=status,
        headers={"x-amzn-ErrorType": kind, "x-amzn-RequestId": request_id},
    )


def invoke_registrar(invocations: AsyncInvocations) -> Callable[[web.Application], None]:
    """Adds the Invoke API to a gateway app (see infra.local.gateway.build_app's registrars)."""

    def register(app: web.Application) -> None:
        app.router.add_post(INVOKE_PATH, invocations.handle)
        app.on_shutdown.append(invocations.shutdown)

    return register
