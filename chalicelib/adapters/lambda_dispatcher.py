"""Starting one fan-out worker per shard: Lambda's asynchronous invoke (``InvocationType="Event"``).

Why Lambda async invoke rather than SQS: the payload is tiny (a round id and a shard number; the round's
values are stored once in Redis), Lambda queues the event itself, retries a failed worker twice and then
hands the event to the function's on-failure destination (an SQS queue with an alarm, set by
``make deploy``), and throttled events wait in Lambda's queue (up to the maximum event age) instead of
being lost, so the worker's reserved concurrency is a safe bound on the total post rate. SQS would add a
queue, a poller and batch semantics for one message per shard.

An invoke call that fails here (throttled API, network) is retried with capped backoff; a shard whose
invoke never succeeded is reported, and its connections get the next round's values (each frame holds
the latest value of every changed item).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from chalicelib import observability
from chalicelib.adapters.aws_clients import pooled_client
from chalicelib.ports import DispatchReport, ShardTask

logger = observability.logger


def lambda_client(region: str, *, pool_size: int, timeout_seconds: float) -> Any:
    # No endpoint: AWS_ENDPOINT_URL_LAMBDA (boto3's service-specific endpoint) points it at the local gateway.
    return pooled_client("lambda", region, pool_size=pool_size, timeout_seconds=timeout_seconds)


class LambdaShardDispatcher:
    def __init__(self, client: Any, function_name: str, *, concurrency: int = 16, max_attempts: int = 3) -> None:
        self._client = client
        self._function = function_name
        self._concurrency = concurrency
        self._max_attempts = max_attempts

    def dispatch(self, tasks: Sequence[ShardTask]) -> DispatchReport:
        if not tasks:
            return DispatchReport(dispatched=0, failed=())
        with ThreadPoolExecutor(max_workers=min(self._concurrency, len(tasks)), thread_name_prefix="dispatch") as pool:
            outcomes = list(pool.map(self._invoke, tasks))
        failed = tuple(task.shard for task, ok in zip(tasks, outcomes, strict=True) if not ok)
        return DispatchReport(dispatched=len(tasks) - len(failed), failed=failed)

    def _invoke(self, task: ShardTask) -> bool:
        payload = json.dumps({"round": task.round_id, "shard": task.shard}).encode()
        retrying = Retrying(
            stop=stop_after_attempt(self._max_attempts),
            wait=wait_random_exponential(multiplier=0.05, max=0.5),
            retry=retry_if_exception_type((ClientError, BotoCoreError)),
            reraise=True,
        )
        try:
            retrying(self._client.invoke, FunctionName=self._function, InvocationType="Event", Payload=payload)
        except (ClientError, BotoCoreError) as exc:
            code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else type(exc).__name__
            logger.warning(
                "fan-out dispatch failed", extra={"shard": task.shard, "round": task.round_id, "error": code}
            )
            return False
        return True
