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
- Translating SDK errors into StoreUnavailable (the operation and AWS error code, never items),
  following pages and retrying throttled BatchWriteItem requests are ``DynamoDBAdapter``'s, in
  dynamodb_support, which the connection store uses too.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Unpack

from aws_lambda_powertools import Logger

from chalicelib.adapters.dynamodb_support import (
    AdapterOptions,
    DynamoDBAdapter,
    Item,
    attr_n,
    attr_s,
    iso_utc,
)
from chalicelib.ports import JobRun, RunStatus

logger = Logger(child=True)

BY_JOB_INDEX = "by-job"
ERROR_MAX_CHARS = 1000  # a run's error message is truncated to this (items are capped at 400 KB)


class DynamoDBJobRunStore(DynamoDBAdapter):
    store_name = "job run store"

    def __init__(
        self,
        client: Any,  # a boto3 DynamoDB client (botocore clients are untyped)
        table: str,
        **options: Unpack[AdapterOptions],
    ) -> None:
        """``options``: the plumbing knobs (AdapterOptions); without ``page_size``, ``recent`` reads
        ``limit`` items a page and ``delete_expired`` DynamoDB's 1 MB pages."""
        super().__init__(client, **options)
        if self._page_size is not None and self._page_size < 1:
            raise ValueError("page_size must be at least 1")
        self._table = table

    # --- writes -----------------------------------------------------------------------------------

    def start(self, run: JobRun) -> bool:
        written = self._call_if(
            "put_item",
            TableName=self._table,
            Item=_item_from_run(run),
            ConditionExpression="attribute_not_exists(#task_id)",
            ExpressionAttributeNames={"#task_id": "task_id"},
        )
        return written is not None  # None: a run with this task id exists, a duplicate delivery

    def finish(self, run: JobRun) -> None:
        names = {"#task_id": "task_id"}
        values: Item = {}
        sets: list[str] = []
        removes: list[str] = []
        outcome: dict[str, dict[str, Any] | None] = {
            "status": attr_s(run.status.value),
            "finished_at": attr_s(_iso_utc(run.finished_at)) if run.finished_at is not None else None,
            "duration_ms": attr_n(run.duration_ms) if run.duration_ms is not None else None,
            "counts": _counts(run.counts),
            "error": attr_s(_truncate(run.error)) if run.error is not None else None,
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
        updated = self._call_if(
            "update_item",
            TableName=self._table,
            Key={"task_id": attr_s(run.task_id)},
            UpdateExpression=update,
            ConditionExpression="attribute_exists(#task_id)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
        if updated is None:
            # Never started, or already removed by retention: nothing to finish, and no bare item.
            logger.warning("finish of an unknown job run ignored", extra={"job_name": run.job_name})

    # --- reads ------------------------------------------------------------------------------------

    def get(self, task_id: str, *, now: float) -> JobRun | None:
        # Consistent: read right after start/finish wrote it.
        item = self._get_live(self._table, {"task_id": attr_s(task_id)}, now=now)
        return _run_from_item(item) if item is not None else None

    def recent(self, job_name: str, *, limit: int, now: float) -> list[JobRun]:
        if limit < 1:
            return []
        items = self._query_live(
            self._table,
            "job_name",
            attr_s(job_name),
            now=now,
            index=BY_JOB_INDEX,
            newest_first=True,  # started_at descending
            # Limit caps the items read before the filter, so a page of `limit` usually suffices
            # (expired runs are the oldest, at the end); pages are followed only while short.
            limit=self._page_size or limit,
        )
        # The generator is lazy: no page is requested once `limit` runs are in hand.
        return [_run_from_item(item) for item in itertools.islice(items, limit)]

    # --- retention --------------------------------------------------------------------------------

    def delete_expired(self, *, now: float) -> int:
        # Deleting behind the scan is safe: ExclusiveStartKey need not exist any more.
        expired = self._scan_expired(self._table, "task_id", now=now)
        return self._write_all(self._table, ({"DeleteRequest": {"Key": {"task_id": i["task_id"]}}} for i in expired))


def _iso_utc(moment: datetime) -> str:
    """Fixed width, so that string order is time order: always microseconds, always +00:00."""
    return iso_utc(moment, timespec="microseconds")


def _truncate(error: str) -> str:
    return error[:ERROR_MAX_CHARS]


def _counts(counts: Mapping[str, int]) -> dict[str, Any]:
    # An empty Map is allowed (unlike an empty set).
    return {"M": {name: attr_n(value) for name, value in counts.items()}}


def _item_from_run(run: JobRun) -> Item:
    item: Item = {
        "task_id": attr_s(run.task_id),
        "job_name": attr_s(run.job_name),
        "trigger": attr_s(run.trigger),
        "status": attr_s(run.status.value),
        "started_at": attr_s(_iso_utc(run.started_at)),
        "counts": _counts(run.counts),
        "expires_at": attr_n(run.expires_at),
    }
    if run.finished_at is not None:
        item["finished_at"] = attr_s(_iso_utc(run.finished_at))
    if run.duration_ms is not None:
        item["duration_ms"] = attr_n(run.duration_ms)
    if run.error is not None:
        item["error"] = attr_s(_truncate(run.error))
    if run.event_id is not None:
        item["event_id"] = attr_s(run.event_id)
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
