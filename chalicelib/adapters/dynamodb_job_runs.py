"""DynamoDB implementation of the JobRunStore port (the JobRunsTable of infra/template.yaml).

Key design:

- PK ``task_id``: recording a run, finishing it and serving /jobs/{task_id} are single-item calls.
  ``start`` is a conditional PutItem (``attribute_not_exists``), so a duplicate delivery of the same
  event (same task id) writes nothing and is told so; ``finish`` is a conditional UpdateItem
  (``attribute_exists``), so it never creates a bare item for a run that was never started.
- GSI ``by-job`` (``job_name``, ``started_at``, ALL projection): "the job's latest runs" is one Query
  read newest first (``ScanIndexForward=False``). ``started_at`` is an ISO 8601 UTC string of fixed
  width (always with microseconds, always ``+00:00``), so string order is time order.
- Every item carries ``expires_at`` (epoch seconds), the table's TTL attribute (retention). DynamoDB's
  TTL deletes late and moto never does, so every read filters on ``expires_at > now`` itself, and the
  cleanup job's ``delete_expired`` removes what TTL has not yet: a projection Scan of the keys,
  deleted 25 per BatchWriteItem.
- Every expression names attributes through ExpressionAttributeNames and values through
  ExpressionAttributeValues; nothing is spliced into expression text.
- BatchWriteItem may hand requests back as UnprocessedItems (throttling): those are resubmitted with a
  short, capped exponential backoff, a bounded number of times.
- SDK failures (ClientError, BotoCoreError: endpoint unreachable, timeouts) become StoreUnavailable
  once, here, ``from`` the original; messages name the operation and AWS error code, never items.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import StoreUnavailable
from chalicelib.ports import JobRun, RunStatus

logger = Logger(child=True)

BATCH_WRITE_LIMIT = 25  # DynamoDB's maximum number of requests in one BatchWriteItem
BY_JOB_INDEX = "by-job"
ERROR_MAX_CHARS = 1000  # a run's error message is truncated to this (items are capped at 400 KB)

_SDK_FAILURES = (ClientError, BotoCoreError)
_NOT_EXPIRED = "#expires_at > :now"
_EXPIRED = "#expires_at <= :now"
_CONDITION_FAILED = "ConditionalCheckFailedException"

Item = dict[str, Any]  # a low-level DynamoDB item: attribute name → {"S": ...} / {"N": ...} / {"M": ...}


class DynamoDBJobRunStore:
    def __init__(
        self,
        client: Any,  # a boto3 DynamoDB client (botocore clients are untyped)
        table: str,
        *,
        page_size: int | None = None,
        batch_attempts: int = 6,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``page_size`` sets Limit on Queries and Scans (None: ``recent`` reads ``limit`` items a page,
        ``delete_expired`` DynamoDB's 1 MB pages); the batch_* and backoff_* knobs bound the
        UnprocessedItems retries; sleep is for tests."""
        if batch_attempts < 1:
            raise ValueError("batch_attempts must be at least 1")
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._client = client
        self._table = table
        self._page_size = page_size
        self._batch_attempts = batch_attempts
        self._backoff_base = backoff_base_seconds
        self._backoff_cap = backoff_cap_seconds
        self._sleep = sleep

    # --- writes -----------------------------------------------------------------------------------

    def start(self, run: JobRun) -> bool:
        try:
            self._client.put_item(
                TableName=self._table,
                Item=_item_from_run(run),
                ConditionExpression="attribute_not_exists(#task_id)",
                ExpressionAttributeNames={"#task_id": "task_id"},
            )
        except ClientError as exc:
            if _error_code(exc) == _CONDITION_FAILED:
                return False  # a run with this task id exists: a duplicate delivery
            self._translate("put_item", exc)
        except BotoCoreError as exc:
            self._translate("put_item", exc)
        return True

    def finish(self, run: JobRun) -> None:
        names = {"#task_id": "task_id"}
        values: Item = {}
        sets: list[str] = []
        removes: list[str] = []
        outcome: dict[str, dict[str, Any] | None] = {
            "status": _s(run.status.value),
            "finished_at": _s(_iso_utc(run.finished_at)) if run.finished_at is not None else None,
            "duration_ms": _n(run.duration_ms) if run.duration_ms is not None else None,
            "counts": _counts(run.counts),
            "error": _s(_truncate(run.error)) if run.error is not None else None,
        }
        for attribute, value in outcome.items():
            names[f"#{attribute}"] = attribute
            if value is None:
                removes.append(f"#{attribute}")
            else:
                sets.append(f"#{attribute} = :{attribute}")
                values[f":{attribute}"] = value
        update = f"SET {', '.join(sets)}"  # only the fixed placeholders above: never names or values
        if removes:
            update += f" REMOVE {', '.join(removes)}"
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"task_id": _s(run.task_id)},
                UpdateExpression=update,
                ConditionExpression="attribute_exists(#task_id)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if _error_code(exc) == _CONDITION_FAILED:
                # Never started, or already removed by retention: nothing to finish, and no bare item.
                logger.warning("finish of an unknown job run ignored", extra={"job_name": run.job_name})
                return
            self._translate("update_item", exc)
        except BotoCoreError as exc:
            self._translate("update_item", exc)

    # --- reads ------------------------------------------------------------------------------------

    def get(self, task_id: str, *, now: float) -> JobRun | None:
        response = self._call(
            "get_item",
            TableName=self._table,
            Key={"task_id": _s(task_id)},
            ConsistentRead=True,  # read right after start/finish wrote it
        )
        item = response.get("Item")
        if item is None:
            return None
        run = _run_from_item(item)
        return None if run.expires_at <= now else run

    def recent(self, job_name: str, *, limit: int, now: float) -> list[JobRun]:
        if limit < 1:
            return []
        items = self._paginate(
            "query",
            TableName=self._table,
            IndexName=BY_JOB_INDEX,
            KeyConditionExpression="#job_name = :job_name",
            FilterExpression=_NOT_EXPIRED,
            ScanIndexForward=False,  # newest first: started_at descending
            ExpressionAttributeNames={"#job_name": "job_name", "#expires_at": "expires_at"},
            ExpressionAttributeValues={":job_name": _s(job_name), ":now": _now(now)},
            # Limit caps the items read before the filter, so a page of `limit` usually suffices
            # (expired runs are the oldest, at the end); pages are followed only while short.
            Limit=self._page_size or limit,
        )
        # The generator is lazy: no page is requested once `limit` runs are in hand.
        return [_run_from_item(item) for item in itertools.islice(items, limit)]

    # --- retention --------------------------------------------------------------------------------

    def delete_expired(self, *, now: float) -> int:
        removed = 0
        pending: list[Mapping[str, Any]] = []
        for item in self._paginate(
            "scan",
            TableName=self._table,
            FilterExpression=_EXPIRED,
            ProjectionExpression="#task_id",
            ExpressionAttributeNames={"#task_id": "task_id", "#expires_at": "expires_at"},
            ExpressionAttributeValues={":now": _now(now)},
        ):
            pending.append({"DeleteRequest": {"Key": {"task_id": item["task_id"]}}})
            if len(pending) == BATCH_WRITE_LIMIT:
                # Deleting behind the scan is safe: ExclusiveStartKey need not exist any more.
                self._write_chunk(pending)
                removed += len(pending)
                pending = []
        if pending:
            self._write_chunk(pending)
            removed += len(pending)
        return removed

    # --- plumbing ---------------------------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> Any:
        try:
            return getattr(self._client, operation)(**params)
        except _SDK_FAILURES as exc:
            self._translate(operation, exc)

    @staticmethod
    def _translate(operation: str, exc: ClientError | BotoCoreError) -> NoReturn:
        """The one place SDK failures become StoreUnavailable."""
        error_code = _error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        logger.warning("job run store call failed", extra={"operation": operation, "error_code": error_code})
        raise StoreUnavailable(f"job run store: {operation} failed ({error_code})") from exc

    def _paginate(self, operation: str, **params: Any) -> Iterator[Item]:
        """Every item of a Query or Scan, following LastEvaluatedKey page by page (lazily)."""
        if self._page_size is not None:
            params.setdefault("Limit", self._page_size)
        while True:
            page = self._call(operation, **params)
            yield from page.get("Items", [])
            last_key = page.get("LastEvaluatedKey")
            if not last_key:
                return
            params["ExclusiveStartKey"] = last_key

    def _write_chunk(self, chunk: Sequence[Mapping[str, Any]]) -> None:
        # A bounded loop rather than tenacity: each retry sends a different request (only what came
        # back unprocessed), which a retry decorator around a fixed call does not express.
        pending: dict[str, Any] = {self._table: list(chunk)}
        for attempt in range(self._batch_attempts):
            if attempt:
                self._sleep(min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1)))
            response = self._call("batch_write_item", RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
        left = sum(len(requests) for requests in pending.values())
        logger.warning("batch write left items unprocessed", extra={"unprocessed": left})
        raise StoreUnavailable(f"job run store: batch_write_item left {left} requests unprocessed")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def _now(now: float) -> dict[str, str]:
    # expires_at is whole seconds, so `expires_at > now` is `expires_at > floor(now)` (and `<=` alike).
    return _n(math.floor(now))


def _iso_utc(moment: datetime) -> str:
    """Fixed width, so that string order is time order: always microseconds, always +00:00."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat(timespec="microseconds")


def _truncate(error: str) -> str:
    return error[:ERROR_MAX_CHARS]


def _counts(counts: Mapping[str, int]) -> dict[str, Any]:
    # An empty Map is allowed (unlike an empty set).
    return {"M": {name: _n(value) for name, value in counts.items()}}


def _item_from_run(run: JobRun) -> Item:
    item: Item = {
        "task_id": _s(run.task_id),
        "job_name": _s(run.job_name),
        "trigger": _s(run.trigger),
        "status": _s(run.status.value),
        "started_at": _s(_iso_utc(run.started_at)),
        "counts": _counts(run.counts),
        "expires_at": _n(run.expires_at),
    }
    if run.finished_at is not None:
        item["finished_at"] = _s(_iso_utc(run.finished_at))
    if run.duration_ms is not None:
        item["duration_ms"] = _n(run.duration_ms)
    if run.error is not None:
        item["error"] = _s(_truncate(run.error))
    if run.event_id is not None:
        item["event_id"] = _s(run.event_id)
    return item


def _run_from_item(item: Item) -> JobRun:
    return JobRun(
        task_id=item["task_id"]["S"],
        job_name=item["job_name"]["S"],
        trigger=item["trigger"]["S"],
        status=RunStatus(item["status"]["S"]),
        started_at=datetime.fromisoformat(item["started_at"]["S"]),
        finished_at=datetime.fromisoformat(item["finished_at"]["S"]) if "finished_at" in item else None,
        duration_ms=int(item["duration_ms"]["N"]) if "duration_ms" in item else None,
        counts={name: int(value["N"]) for name, value in item.get("counts", {}).get("M", {}).items()},
        error=item["error"]["S"] if "error" in item else None,
        event_id=item["event_id"]["S"] if "event_id" in item else None,
        expires_at=int(item["expires_at"]["N"]),
    )
