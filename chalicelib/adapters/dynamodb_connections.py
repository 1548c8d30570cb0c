"""DynamoDB implementation of the ConnectionStore port (two tables, see infra/template.yaml).

Key design:

- Connections: PK ``connection_id``; GSI ``by-user`` (``user_id``) for "this user's connections".
- Subscriptions: PK ``topic``, SK ``connection_id``, so fan-out for one topic is one Query on the
  partition key: it reads exactly that topic's items, however many topics and connections exist. A
  Scan would read (and bill) the whole table on every broadcast. GSI ``by-connection``
  (``connection_id``, ``topic``, projecting ``expires_at``) answers "what does X subscribe to" and lets
  ``remove_connection`` find every item to delete, again without a Scan. Only ``stats`` scans: an
  operator view, never on a hot path.
- Every item carries ``expires_at`` (epoch seconds), the tables' TTL attribute. DynamoDB's TTL deletes
  late (typically within days, not seconds) and moto never does, so every read filters on
  ``expires_at > now`` itself: ``get_connection`` in code, Queries and Scans with a FilterExpression.
  ``remove_connection`` is the one read that does not filter: it removes expired items too.
- Every expression names attributes through ExpressionAttributeNames and values through
  ExpressionAttributeValues; nothing is spliced into expression text (topics contain colons).
- BatchWriteItem takes at most 25 requests and may hand some back as UnprocessedItems (throttling):
  those are resubmitted with a short, capped exponential backoff, a bounded number of times.
- SDK failures (ClientError, BotoCoreError: endpoint unreachable, timeouts) become StoreUnavailable
  once, here, ``from`` the original; messages name the operation and AWS error code, never items.
- The GSIs are eventually consistent: a subscription written milliseconds before ``remove_connection``
  may be missed. It then lives until its ``expires_at`` (the connection's), is filtered out after that,
  and a post to the gone connection returns 410, which removes the connection again.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.errors import StoreUnavailable
from chalicelib.ports import ConnectionRecord, StreamingStats

logger = Logger(child=True)

BATCH_WRITE_LIMIT = 25  # DynamoDB's maximum number of requests in one BatchWriteItem
BY_USER_INDEX = "by-user"
BY_CONNECTION_INDEX = "by-connection"

_SDK_FAILURES = (ClientError, BotoCoreError)
_NOT_EXPIRED = "#expires_at > :now"

Item = dict[str, Any]  # a low-level DynamoDB item: attribute name → {"S": ...} / {"N": ...}


class DynamoDBConnectionStore:
    def __init__(
        self,
        client: Any,  # a boto3 DynamoDB client (botocore clients are untyped)
        connections_table: str,
        subscriptions_table: str,
        *,
        page_size: int | None = None,
        batch_attempts: int = 6,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``page_size`` sets Limit on Queries and Scans (None: DynamoDB's 1 MB pages); the batch_*
        and backoff_* knobs bound the UnprocessedItems retries; clock and sleep are for tests."""
        if batch_attempts < 1:
            raise ValueError("batch_attempts must be at least 1")
        self._client = client
        self._connections = connections_table
        self._subscriptions = subscriptions_table
        self._page_size = page_size
        self._batch_attempts = batch_attempts
        self._backoff_base = backoff_base_seconds
        self._backoff_cap = backoff_cap_seconds
        self._clock = clock
        self._sleep = sleep

    # --- connections ------------------------------------------------------------------------------

    def add_connection(self, record: ConnectionRecord) -> None:
        item: Item = {
            "connection_id": _s(record.connection_id),
            "user_id": _s(record.user_id),
            "connected_at": _s(_iso_utc(record.connected_at)),
            "expires_at": _n(record.expires_at),
        }
        if record.source_ip is not None:
            item["source_ip"] = _s(record.source_ip)
        if record.user_agent is not None:
            item["user_agent"] = _s(record.user_agent)
        self._call("put_item", TableName=self._connections, Item=item)

    def get_connection(self, connection_id: str, *, now: float) -> ConnectionRecord | None:
        response = self._call(
            "get_item",
            TableName=self._connections,
            Key={"connection_id": _s(connection_id)},
            ConsistentRead=True,  # read right after $connect wrote it
        )
        item = response.get("Item")
        if item is None:
            return None
        record = _connection_from_item(item)
        return None if record.expires_at <= now else record

    def connections_of_user(self, user_id: str, *, now: float) -> list[ConnectionRecord]:
        items = self._paginate(
            "query",
            TableName=self._connections,
            IndexName=BY_USER_INDEX,
            KeyConditionExpression="#user_id = :user_id",
            FilterExpression=_NOT_EXPIRED,
            ExpressionAttributeNames={"#user_id": "user_id", "#expires_at": "expires_at"},
            ExpressionAttributeValues={":user_id": _s(user_id), ":now": _now(now)},
        )
        return [_connection_from_item(item) for item in items]

    def remove_connection(self, connection_id: str) -> int:
        # No expiry filter here: expired subscriptions are removed as well.
        items = self._paginate(
            "query",
            TableName=self._subscriptions,
            IndexName=BY_CONNECTION_INDEX,
            KeyConditionExpression="#connection_id = :connection_id",
            ProjectionExpression="#topic, #connection_id",
            ExpressionAttributeNames={"#connection_id": "connection_id", "#topic": "topic"},
            ExpressionAttributeValues={":connection_id": _s(connection_id)},
        )
        keys = [{"topic": item["topic"], "connection_id": item["connection_id"]} for item in items]
        self._batch_write([{"DeleteRequest": {"Key": key}} for key in keys])
        self._call("delete_item", TableName=self._connections, Key={"connection_id": _s(connection_id)})
        return len(keys)

    # --- subscriptions ----------------------------------------------------------------------------

    def add_subscriptions(self, connection_id: str, topics: Sequence[str], *, expires_at: int) -> None:
        created_at = _iso_utc(datetime.fromtimestamp(self._clock(), tz=UTC))
        self._batch_write(
            [
                {
                    "PutRequest": {
                        "Item": {
                            "topic": _s(topic),
                            "connection_id": _s(connection_id),
                            "expires_at": _n(expires_at),
                            "created_at": _s(created_at),
                        }
                    }
                }
                for topic in _unique(topics)
            ]
        )

    def remove_subscriptions(self, connection_id: str, topics: Sequence[str]) -> None:
        self._batch_write(
            [
                {"DeleteRequest": {"Key": {"topic": _s(topic), "connection_id": _s(connection_id)}}}
                for topic in _unique(topics)
            ]
        )

    def topics_of(self, connection_id: str, *, now: float) -> list[str]:
        items = self._paginate(
            "query",
            TableName=self._subscriptions,
            IndexName=BY_CONNECTION_INDEX,
            KeyConditionExpression="#connection_id = :connection_id",
            FilterExpression=_NOT_EXPIRED,
            ProjectionExpression="#topic",
            ExpressionAttributeNames={
                "#connection_id": "connection_id",
                "#topic": "topic",
                "#expires_at": "expires_at",
            },
            ExpressionAttributeValues={":connection_id": _s(connection_id), ":now": _now(now)},
        )
        return [item["topic"]["S"] for item in items]

    def subscribers(self, topic: str, *, now: float) -> list[str]:
        items = self._paginate(
            "query",
            TableName=self._subscriptions,
            KeyConditionExpression="#topic = :topic",
            FilterExpression=_NOT_EXPIRED,
            ProjectionExpression="#connection_id",
            ExpressionAttributeNames={
                "#topic": "topic",
                "#connection_id": "connection_id",
                "#expires_at": "expires_at",
            },
            ExpressionAttributeValues={":topic": _s(topic), ":now": _now(now)},
        )
        return [item["connection_id"]["S"] for item in items]

    # --- operator view ----------------------------------------------------------------------------

    def stats(self, *, now: float, top: int) -> StreamingStats:
        open_connections = 0
        users: set[str] = set()
        for item in self._paginate(
            "scan",
            TableName=self._connections,
            FilterExpression=_NOT_EXPIRED,
            ProjectionExpression="#user_id, #expires_at",
            ExpressionAttributeNames={"#user_id": "user_id", "#expires_at": "expires_at"},
            ExpressionAttributeValues={":now": _now(now)},
        ):
            open_connections += 1
            users.add(item["user_id"]["S"])
        counts: Counter[str] = Counter(
            item["topic"]["S"]
            for item in self._paginate(
                "scan",
                TableName=self._subscriptions,
                FilterExpression=_NOT_EXPIRED,
                ProjectionExpression="#topic, #expires_at",
                ExpressionAttributeNames={"#topic": "topic", "#expires_at": "expires_at"},
                ExpressionAttributeValues={":now": _now(now)},
            )
        )
        ranked = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[: max(top, 0)]
        return StreamingStats(
            open_connections=open_connections,
            distinct_users=len(users),
            subscribers_by_topic=dict(ranked),
        )

    # --- plumbing ---------------------------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> Any:
        """The one place SDK failures become StoreUnavailable."""
        try:
            return getattr(self._client, operation)(**params)
        except _SDK_FAILURES as exc:
            error_code = (
                exc.response.get("Error", {}).get("Code", "?") if isinstance(exc, ClientError) else type(exc).__name__
            )
            logger.warning("connection store call failed", extra={"operation": operation, "error_code": error_code})
            raise StoreUnavailable(f"connection store: {operation} failed ({error_code})") from exc

    def _paginate(self, operation: str, **params: Any) -> Iterator[Item]:
        """Every item of a Query or Scan, following LastEvaluatedKey page by page."""
        if self._page_size is not None:
            params["Limit"] = self._page_size
        while True:
            page = self._call(operation, **params)
            yield from page.get("Items", [])
            last_key = page.get("LastEvaluatedKey")
            if not last_key:
                return
            params["ExclusiveStartKey"] = last_key

    def _batch_write(self, requests: Sequence[Mapping[str, Any]]) -> None:
        for start in range(0, len(requests), BATCH_WRITE_LIMIT):
            self._write_chunk(list(requests[start : start + BATCH_WRITE_LIMIT]))

    def _write_chunk(self, chunk: list[Mapping[str, Any]]) -> None:
        # A bounded loop rather than tenacity: each retry sends a different request (only what came
        # back unprocessed), which a retry decorator around a fixed call does not express.
        pending: dict[str, Any] = {self._subscriptions: chunk}
        for attempt in range(self._batch_attempts):
            if attempt:
                self._sleep(min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1)))
            response = self._call("batch_write_item", RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
        left = sum(len(requests) for requests in pending.values())
        logger.warning("batch write left items unprocessed", extra={"unprocessed": left})
        raise StoreUnavailable(f"connection store: batch_write_item left {left} requests unprocessed")


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def _now(now: float) -> dict[str, str]:
    # expires_at is whole seconds, so `expires_at > now` is `expires_at > floor(now)`: exact, no float text.
    return _n(math.floor(now))


def _iso_utc(moment: datetime) -> str:
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat()


def _unique(topics: Sequence[str]) -> list[str]:
    # A BatchWriteItem with two requests for the same key is rejected as a whole.
    return list(dict.fromkeys(topics))


def _connection_from_item(item: Item) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=item["connection_id"]["S"],
        user_id=item["user_id"]["S"],
        connected_at=datetime.fromisoformat(item["connected_at"]["S"]),
        expires_at=int(item["expires_at"]["N"]),
        source_ip=item["source_ip"]["S"] if "source_ip" in item else None,
        user_agent=item["user_agent"]["S"] if "user_agent" in item else None,
    )
