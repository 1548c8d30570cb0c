"""DynamoDB implementation of the ConnectionStore port (two tables, see infra/template.yaml).

Key design:

- Connections: PK ``connection_id``; GSI ``by-user`` (``user_id``) for "this user's connections".
- Subscriptions: PK ``topic``, SK ``connection_id``, so fan-out for one topic is one Query on the
  partition key: it reads exactly that topic's items, however many topics and connections exist. A
  Scan would read (and bill) the whole table on every broadcast.
- Each connection item also holds its topic set (a String Set, ``topics``), maintained with atomic
  ``ADD``/``DELETE`` updates that return the new set: "what does X subscribe to" is one consistent
  GetItem, the ack after a subscribe comes from the same UpdateItem that changed it, and
  ``remove_connection`` knows every subscription item to delete without a query. (The GSI
  ``by-connection`` of the subscriptions table is eventually consistent, so it could miss an item
  written a moment before; it is kept for operators and ad-hoc queries.) The set is written before
  the subscription items and removed after them, so it always covers them. Only ``stats`` scans: an
  operator view, never on a hot path; ``subscribed_topics`` and ``delete_expired`` scan too, run by
  the scheduled jobs only. ``delete_expired`` finds orphan subscriptions (no connection item) with
  consistent BatchGetItems on the connections table, 100 keys a call, not one GetItem per item.
- Every item carries ``expires_at`` (epoch seconds), the tables' TTL attribute. DynamoDB's TTL deletes
  late (typically within days, not seconds) and moto never does, so every read filters on
  ``expires_at > now`` itself: ``get_connection`` in code, Queries and Scans with a FilterExpression.
  ``remove_connection`` is the one read that does not filter: it removes expired items too.
- Every expression names attributes through ExpressionAttributeNames and values through
  ExpressionAttributeValues; nothing is spliced into expression text (topics contain colons).
- The plumbing shared with the job run store lives in ``DynamoDBAdapter`` (dynamodb_support): SDK
  failures become StoreUnavailable there, Queries and Scans are paginated there, and BatchWriteItem's
  UnprocessedItems are retried there with a capped exponential backoff. BatchGetItem's UnprocessedKeys
  (``delete_expired``) get the same backoff here.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from chalicelib.adapters.dynamodb_support import NOT_EXPIRED, DynamoDBAdapter, Item, attr_n, attr_now, attr_s, iso_utc
from chalicelib.errors import StoreUnavailable
from chalicelib.ports import ConnectionRecord, StreamingStats

logger = Logger(child=True)

BATCH_GET_LIMIT = 100  # DynamoDB's maximum number of keys in one BatchGetItem
BY_USER_INDEX = "by-user"


class DynamoDBConnectionStore(DynamoDBAdapter):
    store_name = "connection store"

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
        super().__init__(
            client,
            page_size=page_size,
            batch_attempts=batch_attempts,
            backoff_base_seconds=backoff_base_seconds,
            backoff_cap_seconds=backoff_cap_seconds,
            sleep=sleep,
        )
        self._connections = connections_table
        self._subscriptions = subscriptions_table
        self._clock = clock

    # --- connections ------------------------------------------------------------------------------

    def add_connection(self, record: ConnectionRecord) -> None:
        item: Item = {
            "connection_id": attr_s(record.connection_id),
            "user_id": attr_s(record.user_id),
            "connected_at": attr_s(iso_utc(record.connected_at)),
            "expires_at": attr_n(record.expires_at),
            "format": attr_s(record.message_format),
        }
        if record.source_ip is not None:
            item["source_ip"] = attr_s(record.source_ip)
        if record.user_agent is not None:
            item["user_agent"] = attr_s(record.user_agent)
        self._call("put_item", TableName=self._connections, Item=item)

    def get_connection(self, connection_id: str, *, now: float) -> ConnectionRecord | None:
        # Consistent: read right after $connect wrote it.
        item = self._get_live(self._connections, {"connection_id": attr_s(connection_id)}, now=now)
        return _connection_from_item(item) if item is not None else None

    def connections_of_user(self, user_id: str, *, now: float) -> list[ConnectionRecord]:
        items = self._paginate(
            "query",
            TableName=self._connections,
            IndexName=BY_USER_INDEX,
            KeyConditionExpression="#user_id = :user_id",
            FilterExpression=NOT_EXPIRED,
            ExpressionAttributeNames={"#user_id": "user_id", "#expires_at": "expires_at"},
            ExpressionAttributeValues={":user_id": attr_s(user_id), ":now": attr_now(now)},
        )
        return [_connection_from_item(item) for item in items]

    def remove_connection(self, connection_id: str) -> int:
        # No expiry filter here: an expired connection's subscriptions are removed as well.
        response = self._call(
            "get_item",
            TableName=self._connections,
            Key={"connection_id": attr_s(connection_id)},
            ConsistentRead=True,
            ProjectionExpression="#topics",
            ExpressionAttributeNames={"#topics": "topics"},
        )
        topics = sorted(_topic_set(response.get("Item") or {}))
        self._batch_write(
            self._subscriptions,
            [{"DeleteRequest": {"Key": {"topic": attr_s(t), "connection_id": attr_s(connection_id)}}} for t in topics],
        )
        self._call("delete_item", TableName=self._connections, Key={"connection_id": attr_s(connection_id)})
        return len(topics)

    # --- subscriptions ----------------------------------------------------------------------------

    def add_subscriptions(self, connection_id: str, topics: Sequence[str], *, expires_at: int) -> list[str] | None:
        wanted = _unique(topics)
        if not wanted:
            return self._current_topics(connection_id)
        current = self._update_topics(connection_id, "ADD", wanted)
        if current is None:
            return None
        created_at = iso_utc(datetime.fromtimestamp(self._clock(), tz=UTC))
        self._batch_write(
            self._subscriptions,
            [
                {
                    "PutRequest": {
                        "Item": {
                            "topic": attr_s(topic),
                            "connection_id": attr_s(connection_id),
                            "expires_at": attr_n(expires_at),
                            "created_at": attr_s(created_at),
                        }
                    }
                }
                for topic in wanted
            ],
        )
        return current

    def remove_subscriptions(self, connection_id: str, topics: Sequence[str]) -> list[str] | None:
        gone = _unique(topics)
        self._batch_write(
            self._subscriptions,
            [{"DeleteRequest": {"Key": {"topic": attr_s(t), "connection_id": attr_s(connection_id)}}} for t in gone],
        )
        if not gone:
            return self._current_topics(connection_id)
        return self._update_topics(connection_id, "DELETE", gone)

    def topics_of(self, connection_id: str, *, now: float) -> list[str]:
        record = self.get_connection(connection_id, now=now)
        return sorted(record.topics) if record is not None else []

    def _current_topics(self, connection_id: str) -> list[str] | None:
        response = self._call(
            "get_item", TableName=self._connections, Key={"connection_id": attr_s(connection_id)}, ConsistentRead=True
        )
        item = response.get("Item")
        return sorted(_topic_set(item)) if item is not None else None

    def _update_topics(self, connection_id: str, action: str, topics: list[str]) -> list[str] | None:
        """ADD or DELETE topics in the connection's set atomically; the new set, or None if no such
        connection (the condition keeps an update from creating a bare item)."""
        response = self._call_if(
            "update_item",
            TableName=self._connections,
            Key={"connection_id": attr_s(connection_id)},
            UpdateExpression=f"{action} #topics :topics",  # the action is one of two literals
            ConditionExpression="attribute_exists(#connection_id)",
            ExpressionAttributeNames={"#topics": "topics", "#connection_id": "connection_id"},
            ExpressionAttributeValues={":topics": {"SS": topics}},
            ReturnValues="ALL_NEW",
        )
        if response is None:
            return None
        return sorted(_topic_set(response.get("Attributes") or {}))

    def subscribers(self, topic: str, *, now: float) -> list[str]:
        items = self._paginate(
            "query",
            TableName=self._subscriptions,
            KeyConditionExpression="#topic = :topic",
            FilterExpression=NOT_EXPIRED,
            ProjectionExpression="#connection_id",
            ExpressionAttributeNames={
                "#topic": "topic",
                "#connection_id": "connection_id",
                "#expires_at": "expires_at",
            },
            ExpressionAttributeValues={":topic": attr_s(topic), ":now": attr_now(now)},
        )
        return [item["connection_id"]["S"] for item in items]

    def subscribed_topics(self, *, now: float) -> list[str]:
        return sorted(set(self._live_subscription_topics(now)))

    def _live_subscription_topics(self, now: float) -> Iterator[str]:
        """The topic of every unexpired subscription item, one per item (a paginated projection Scan)."""
        for item in self._paginate(
            "scan",
            TableName=self._subscriptions,
            FilterExpression=NOT_EXPIRED,
            ProjectionExpression="#topic",
            ExpressionAttributeNames={"#topic": "topic", "#expires_at": "expires_at"},
            ExpressionAttributeValues={":now": attr_now(now)},
        ):
            yield item["topic"]["S"]

    # --- cleanup ----------------------------------------------------------------------------------

    def delete_expired(self, *, now: float) -> tuple[int, int]:
        # (1) Expired connections, each with the subscriptions its topic set lists. Deleting behind a
        # Scan is safe: its ExclusiveStartKey need not exist any more.
        connections = 0
        subscriptions = 0
        for item in self._scan_expired(self._connections, "connection_id", now=now):
            subscriptions += self.remove_connection(item["connection_id"]["S"])
            connections += 1
        # (2) Subscription items that expired on their own, or whose connection item is gone, deleted
        # BATCH_WRITE_LIMIT at a time as the scan finds them.
        subscriptions += self._write_all(self._subscriptions, self._stale_subscription_deletes(now))
        return connections, subscriptions

    def _stale_subscription_deletes(self, now: float) -> Iterator[Mapping[str, Any]]:
        """A DeleteRequest for each subscription item that has expired, or whose connection item is gone
        (a process died between writes, or raced a disconnect). Checked BATCH_GET_LIMIT items at a time."""
        items = self._paginate(
            "scan",
            TableName=self._subscriptions,
            ProjectionExpression="#topic, #connection_id, #expires_at",
            ExpressionAttributeNames={
                "#topic": "topic",
                "#connection_id": "connection_id",
                "#expires_at": "expires_at",
            },
        )
        floor_now = math.floor(now)
        while group := list(itertools.islice(items, BATCH_GET_LIMIT)):
            live = [item for item in group if int(item["expires_at"]["N"]) > floor_now]
            existing = self._existing_connections({item["connection_id"]["S"] for item in live})
            stale = [
                item
                for item in group
                if int(item["expires_at"]["N"]) <= floor_now or item["connection_id"]["S"] not in existing
            ]
            for item in stale:
                yield {"DeleteRequest": {"Key": {"topic": item["topic"], "connection_id": item["connection_id"]}}}

    def _existing_connections(self, connection_ids: set[str]) -> set[str]:
        """Which of these (at most BATCH_GET_LIMIT) connections have an item: one consistent
        BatchGetItem (a connection is written before its subscriptions), plus UnprocessedKeys retries."""
        found: set[str] = set()
        if not connection_ids:
            return found
        pending: dict[str, Any] = {
            self._connections: {
                "Keys": [{"connection_id": attr_s(connection_id)} for connection_id in sorted(connection_ids)],
                "ConsistentRead": True,
                "ProjectionExpression": "#connection_id",
                "ExpressionAttributeNames": {"#connection_id": "connection_id"},
            }
        }
        for attempt in range(self._batch_attempts):
            if attempt:
                self._backoff(attempt)
            response = self._call("batch_get_item", RequestItems=pending)
            found.update(
                item["connection_id"]["S"] for item in response.get("Responses", {}).get(self._connections, [])
            )
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return found
        # Unknown is not absent: deleting on a guess could drop a live subscription.
        left = sum(len(request.get("Keys", [])) for request in pending.values())
        logger.warning("batch get left keys unprocessed", extra={"unprocessed": left})
        raise StoreUnavailable(f"connection store: batch_get_item left {left} keys unprocessed")

    # --- operator view ----------------------------------------------------------------------------

    def stats(self, *, now: float, top: int) -> StreamingStats:
        open_connections = 0
        users: set[str] = set()
        for item in self._paginate(
            "scan",
            TableName=self._connections,
            FilterExpression=NOT_EXPIRED,
            ProjectionExpression="#user_id, #expires_at",
            ExpressionAttributeNames={"#user_id": "user_id", "#expires_at": "expires_at"},
            ExpressionAttributeValues={":now": attr_now(now)},
        ):
            open_connections += 1
            users.add(item["user_id"]["S"])
        counts: Counter[str] = Counter(self._live_subscription_topics(now))
        ranked = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))[: max(top, 0)]
        return StreamingStats(
            open_connections=open_connections,
            distinct_users=len(users),
            subscribers_by_topic=dict(ranked),
        )


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
        topics=_topic_set(item),
        message_format=item["format"]["S"] if "format" in item else "spec",  # items written before formats existed
    )


def _topic_set(item: Item) -> frozenset[str]:
    # DynamoDB has no empty sets: deleting the last topic removes the attribute.
    return frozenset(item.get("topics", {}).get("SS", ()))
