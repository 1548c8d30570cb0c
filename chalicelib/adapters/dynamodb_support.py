"""What every DynamoDB adapter shares: SDK error translation, pagination, batched writes, attribute values.

The connection store and the job run store talk to DynamoDB the same way, so the plumbing lives here
once:

- SDK failures (ClientError, BotoCoreError: endpoint unreachable, timeouts) become StoreUnavailable in
  one place, ``from`` the original; messages name the store, the operation and the AWS error code,
  never items.
- Queries and Scans are read lazily page by page, following LastEvaluatedKey, with an optional Limit;
  the shared read shapes (a consistent GetItem of a live item, a projection Scan of expired keys) and
  conditional writes (None when the condition fails) are here too.
- BatchWriteItem takes at most 25 requests and may hand some back as UnprocessedItems (throttling):
  those are resubmitted with a short, capped exponential backoff, a bounded number of times, and
  StoreUnavailable is raised if some are still unprocessed after the last attempt. Requests can be
  sent as a Scan yields them (``_write_all``), so deletes follow a Scan without holding its items.
- Small helpers build low-level attribute values (``{"S": ...}``, ``{"N": ...}``) and the
  ``expires_at`` filters every read applies (DynamoDB's TTL deletes late and moto's never does).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, NoReturn, TypedDict, Unpack

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import StoreUnavailable

logger = Logger(child=True)

BATCH_WRITE_LIMIT = 25  # DynamoDB's maximum number of requests in one BatchWriteItem
SDK_FAILURES = (ClientError, BotoCoreError)
CONDITION_FAILED = "ConditionalCheckFailedException"
NOT_EXPIRED = "#expires_at > :now"  # with ExpressionAttributeNames #expires_at and values :now (attr_now)
EXPIRED = "#expires_at <= :now"

BATCH_GET_LIMIT = 100  # DynamoDB's maximum number of keys in one BatchGetItem
Item = dict[str, Any]  # a low-level DynamoDB item: attribute name → {"S": ...} / {"N": ...} / {"M": ...}


class AdapterOptions(TypedDict, total=False):
    """The plumbing knobs every DynamoDB adapter takes: ``page_size`` sets Limit on Queries and Scans
    (None: DynamoDB's 1 MB pages); ``batch_attempts`` and the backoff bound the UnprocessedItems and
    UnprocessedKeys retries (6 attempts, 0.05 s doubling up to 1 s); ``sleep`` is for tests."""

    page_size: int | None
    batch_attempts: int
    backoff_base_seconds: float
    backoff_cap_seconds: float
    sleep: Callable[[float], None]


class DynamoDBAdapter:
    """Base for DynamoDB adapters: SDK calls, pagination and batched writes with bounded retries."""

    store_name: ClassVar[str]  # names the store in log lines and StoreUnavailable messages

    def __init__(self, client: Any, **options: Unpack[AdapterOptions]) -> None:
        """``client``: a boto3 DynamoDB client (botocore clients are untyped)."""
        batch_attempts = options.get("batch_attempts", 6)
        if batch_attempts < 1:
            raise ValueError("batch_attempts must be at least 1")
        self._client = client
        self._page_size = options.get("page_size")
        self._batch_attempts = batch_attempts
        self._backoff_base = options.get("backoff_base_seconds", 0.05)
        self._backoff_cap = options.get("backoff_cap_seconds", 1.0)
        self._sleep = options.get("sleep", time.sleep)

    def _call(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self._client, operation)(**params)
        except SDK_FAILURES as exc:
            self._translate(operation, exc)

    def _call_if(self, operation: str, **params: Any) -> Any | None:
        """Like ``_call``, for a write with a ConditionExpression: None when the condition does not hold."""
        try:
            return getattr(self._client, operation)(**params)
        except ClientError as exc:
            if error_code(exc) == CONDITION_FAILED:
                return None
            self._translate(operation, exc)
        except BotoCoreError as exc:
            self._translate(operation, exc)

    def _translate(self, operation: str, exc: ClientError | BotoCoreError) -> NoReturn:
        """The one place SDK failures become StoreUnavailable."""
        code = error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        logger.warning(f"{self.store_name} call failed", extra={"operation": operation, "error_code": code})
        raise StoreUnavailable(f"{self.store_name}: {operation} failed ({code})") from exc

    def _paginate(self, operation: str, **params: Any) -> Iterator[Item]:
        """Every item of a Query or Scan, following LastEvaluatedKey page by page (lazily). ``page_size``
        sets Limit unless the caller passed one."""
        if self._page_size is not None:
            params.setdefault("Limit", self._page_size)
        while True:
            page = self._call(operation, **params)
            yield from page.get("Items", [])
            last_key = page.get("LastEvaluatedKey")
            if not last_key:
                return
            params["ExclusiveStartKey"] = last_key

    def _get_live(self, table: str, key: Item, *, now: float) -> Item | None:
        """The item with this key by a consistent read (it may have been written a moment ago), or None
        if there is none or it has expired."""
        item: Item | None = self._call("get_item", TableName=table, Key=key, ConsistentRead=True).get("Item")
        return None if item is None or int(item["expires_at"]["N"]) <= now else item

    def _query_live(
        self,
        table: str,
        attribute: str,
        value: dict[str, str],
        *,
        now: float,
        index: str | None = None,
        projection: Sequence[str] = (),
        newest_first: bool = False,
        limit: int | None = None,
    ) -> Iterator[Item]:
        """The live items (``expires_at`` not passed) whose key ``attribute`` is ``value``: a paged Query of
        ``table`` or its ``index``, reading only the ``projection`` attributes if any, in descending sort
        key order if ``newest_first``, ``limit`` items a page (default: ``page_size``)."""
        # Attribute names are the adapters' own, never values: they go into the expressions as #names.
        names = {f"#{name}": name for name in (attribute, "expires_at", *projection)}
        params: dict[str, Any] = {"IndexName": index} if index else {}
        if projection:
            params["ProjectionExpression"] = ", ".join(f"#{name}" for name in projection)
        if newest_first:
            params["ScanIndexForward"] = False
        if limit is not None:
            params["Limit"] = limit
        return self._paginate(
            "query",
            TableName=table,
            KeyConditionExpression=f"#{attribute} = :{attribute}",
            FilterExpression=NOT_EXPIRED,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={f":{attribute}": value, ":now": attr_now(now)},
            **params,
        )

    def _scan_expired(self, table: str, key: str, *, now: float) -> Iterator[Item]:
        """The ``key`` attribute of every item whose ``expires_at`` has passed: a projection Scan."""
        return self._paginate(
            "scan",
            TableName=table,
            FilterExpression=EXPIRED,
            ProjectionExpression=f"#{key}",  # key is an attribute name of the adapter's, never a value
            ExpressionAttributeNames={f"#{key}": key, "#expires_at": "expires_at"},
            ExpressionAttributeValues={":now": attr_now(now)},
        )

    def _backoff(self, attempt: int) -> None:
        """Before a retry (attempt 1, 2, ...): sleep base, 2·base, 4·base, ..., at most the cap."""
        self._sleep(min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1)))

    def _batch_write(self, table: str, requests: Sequence[Mapping[str, Any]]) -> None:
        """Put/Delete requests on one table, BATCH_WRITE_LIMIT per BatchWriteItem."""
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            self._write_chunk(table, list(requests[start : start + BATCH_WRITE_LIMIT]))

    def _write_all(self, table: str, requests: Iterable[Mapping[str, Any]]) -> int:
        """Like ``_batch_write``, but sends each BATCH_WRITE_LIMIT requests as soon as they are drawn from
        the iterable (so deletes can follow a Scan without holding its items); how many were sent."""
        sent = 0
        remaining = iter(requests)
        while chunk := list(itertools.islice(remaining, BATCH_WRITE_LIMIT)):
            self._write_chunk(table, chunk)
            sent += len(chunk)
        return sent

    def _write_chunk(self, table: str, chunk: list[Mapping[str, Any]]) -> None:
        # A bounded loop rather than tenacity: each retry sends a different request (only what came
        # back unprocessed), which a retry decorator around a fixed call does not express.
        pending: dict[str, Any] = {table: chunk}
        for attempt in range(self._batch_attempts):
            if attempt:
                self._backoff(attempt)
            response = self._call("batch_write_item", RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
        left = sum(len(requests) for requests in pending.values())
        logger.warning("batch write left items unprocessed", extra={"unprocessed": left})
        raise StoreUnavailable(f"{self.store_name}: batch_write_item left {left} requests unprocessed")

    def _get_items(self, table: str, keys: Sequence[Item], attributes: Sequence[str]) -> list[Item]:
        """The items that exist of these keys (distinct), with those attributes: consistent BatchGetItems
        of BATCH_GET_LIMIT keys, plus UnprocessedKeys retries."""
        found: list[Item] = []
        names = {f"#{name}": name for name in attributes}  # attribute names of the adapter's own
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            pending: dict[str, Any] = {
                table: {
                    "Keys": list(keys[start : start + BATCH_GET_LIMIT]),
                    "ConsistentRead": True,
                    "ProjectionExpression": ", ".join(names),
                    "ExpressionAttributeNames": names,
                }
            }
            for attempt in range(self._batch_attempts):
                if attempt:
                    self._backoff(attempt)
                response = self._call("batch_get_item", RequestItems=pending)
                found.extend(response.get("Responses", {}).get(table, []))
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                # Unknown is not absent: deleting on a guess could drop a live subscription.
                left = sum(len(request.get("Keys", [])) for request in pending.values())
                logger.warning("batch get left keys unprocessed", extra={"unprocessed": left})
                raise StoreUnavailable(f"{self.store_name}: batch_get_item left {left} keys unprocessed")
        return found


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


def attr_s(value: str) -> dict[str, str]:
    return {"S": value}


def attr_n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def attr_now(now: float) -> dict[str, str]:
    # expires_at is whole seconds, so `expires_at > now` is `expires_at > floor(now)` (and `<=` alike):
    # exact, no float text.
    return attr_n(math.floor(now))


def iso_utc(moment: datetime, *, timespec: str = "auto") -> str:
    """The moment in UTC as ISO 8601 with ``+00:00``; ``timespec`` as for ``datetime.isoformat``."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat(timespec=timespec)
