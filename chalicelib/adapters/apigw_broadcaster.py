"""Posting to WebSocket clients through the API Gateway management API (``post_to_connection``).

The endpoint is ``https://{api_id}.execute-api.{region}.amazonaws.com/{stage}`` in AWS and the local
gateway's URL under ``make run``. Outcomes, per message:
- 410 ``GoneException``: the client left without a clean ``$disconnect`` → ``GONE`` (the service then
  deletes the connection and its subscriptions);
- throttling (429 ``LimitExceededException``), 5xx and network errors → retried with capped
  exponential backoff and jitter (tenacity), then ``FAILED``;
- any other refusal (403, 413 ``PayloadTooLargeException``, ...) → ``FAILED`` at once: retrying
  cannot change the answer.
``close`` ends a connection from the server side (``delete_connection``: a connection over its message
budget, or whose token expired); API Gateway then runs ``$disconnect``. Same outcomes as a post.
Many messages go out concurrently on a bounded thread pool (boto3 clients are thread-safe), sized with
the client's connection pool so threads never wait for a socket.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_after_delay, wait_random_exponential

from chalicelib import observability
from chalicelib.adapters.aws_clients import pooled_client
from chalicelib.ports import DeliveryStatus

logger = observability.logger

_RETRYABLE_CODES = frozenset(
    {"LimitExceededException", "ThrottlingException", "TooManyRequestsException", "InternalServerError",
     "ServiceUnavailable", "InternalFailure"}
)  # fmt: skip


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in _RETRYABLE_CODES or status >= 500
    return isinstance(exc, BotoCoreError)  # connection refused/reset, read timeout


def _error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def management_client(endpoint_url: str, region: str, *, pool_size: int, timeout_seconds: float) -> Any:
    return pooled_client(
        "apigatewaymanagementapi",
        region,
        pool_size=pool_size,
        timeout_seconds=timeout_seconds,
        endpoint_url=endpoint_url,
    )


@dataclass(frozen=True, slots=True)
class ApiGatewayBroadcaster:
    client: Any
    _: KW_ONLY
    concurrency: int = 32
    max_attempts: int = 3
    retry_base_seconds: float = 0.05
    retry_max_seconds: float = 1.0
    max_retry_seconds: float = 5.0

    def send(self, connection_id: str, message: bytes) -> DeliveryStatus:
        return self._call("post_to_connection", connection_id, Data=message)

    def close(self, connection_id: str) -> DeliveryStatus:
        return self._call("delete_connection", connection_id)

    def _call(self, operation: str, connection_id: str, **params: Any) -> DeliveryStatus:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_retry_seconds),
            wait=wait_random_exponential(multiplier=self.retry_base_seconds, max=self.retry_max_seconds),
            retry=retry_if_exception(_is_retryable),
            reraise=True,
        )
        try:
            retrying(getattr(self.client, operation), ConnectionId=connection_id, **params)
        except ClientError as exc:
            if _error_code(exc) == "GoneException":
                return DeliveryStatus.GONE
            return self._failed(operation, connection_id, exc)
        except BotoCoreError as exc:
            return self._failed(operation, connection_id, exc)
        return DeliveryStatus.SENT

    def _failed(self, operation: str, connection_id: str, exc: BaseException) -> DeliveryStatus:
        logger.warning(f"{operation} failed", extra={"connection_id": connection_id, "error": _error_code(exc)})
        return DeliveryStatus.FAILED

    def send_many(self, deliveries: Sequence[tuple[str, bytes]]) -> list[DeliveryStatus]:
        if not deliveries:
            return []
        if len(deliveries) == 1:
            return [self.send(*deliveries[0])]
        workers = min(self.concurrency, len(deliveries))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fanout") as pool:
            return list(pool.map(lambda delivery: self.send(*delivery), deliveries))
