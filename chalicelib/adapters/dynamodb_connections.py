"""DynamoDB implementation of the ConnectionStore port (three tables, see infra/template.yaml).

Key design:

- Connections: PK ``connection_id``; GSI ``by-user`` (``user_id``) for "this user's connections", and
  GSI ``by-shard`` (``shard``, ``connection_id``, projection ALL) so a shard worker reads every
  connection of its shard with its topic set in a few paged Queries (1 MB each), not one Query per topic.
- Subscriptions: PK ``topic``, SK ``connection_id``, so fan-out for one topic is one Query on the
  partition key. (Kept for ``subscribers`` while the publish still fans out per topic.)
- Each connection item also holds its topic set (a String Set, ``topics``), maintained with atomic
  ``ADD``/``DELETE`` updates that return the item as it was (ALL_OLD): the ack's new set is computed
  from it, and so is exactly what the update newly added or removed, which is what moves the registry
  counts (a subscribe of a topic already held, or a retried one, counts nothing).
- Registry table: see dynamodb_registry.py (the counts and the per-user slots live there).
- Every connection and subscription item carries ``expires_at`` (epoch seconds), the tables' TTL
  attribute. DynamoDB's TTL deletes late (typically within days, not seconds) and moto never does, so
  every read filters on ``expires_at > now`` itself. ``remove_connection`` removes expired items too.
  Registry counts include a connection whose $disconnect never came until the cleanup removes it.
- Every expression names attributes through ExpressionAttributeNames and values through
  ExpressionAttributeValues; nothing is spliced into expression text (topics contain colons).
- Scans: only ``delete_expired`` (the daily cleanup) scans, to find expired connections and orphaned
  subscription items; nothing a request or a refresh runs does. Orphans are checked with consistent
  BatchGetItems, 100 keys a call.
- The plumbing shared with the job run store lives in ``DynamoDBAdapter`` (dynamodb_support): SDK
  failures become StoreUnavailable there, Queries and Scans are paginated there, and BatchWriteItem's
  UnprocessedItems and BatchGetItem's UnprocessedKeys are retried there with a capped exponential
  backoff.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Unpack

from aws_lambda_powertools import Logger

from chalicelib.adapters.dynamodb_connection_items import (
    connection_from_item,
    connection_item,
    shard_of,
    topic_set,
    unique_topics,
)
from chalicelib.adapters.dynamodb_registry import (
    CONNECTIONS_COUNTER,
    RegistryTable,
    counter_key,
    registry_key,
    string_set,
    user_key,
)
from chalicelib.adapters.dynamodb_support import (
    BATCH_GET_LIMIT,
    AdapterOptions,
    Item,
    attr_n,
    attr_s,
    iso_utc,
)
from chalicelib.errors import StoreUnavailable
from chalicelib.ports import ConnectionRecord

logger = Logger(child=True)

BY_USER_INDEX = "by-user"
BY_SHARD_INDEX = "by-shard"


class DynamoDBConnectionStore(RegistryTable):
    store_name = "connection store"

    def __init__(
        self,
        client: Any,  # a boto3 DynamoDB client (botocore clients are untyped)
        connections_table: str,
        subscriptions_table: str,
        registry_table: str,
        *,
        shard_count: int = 16,
        registry_concurrency: int = 8,
        clock: Callable[[], float] = time.time,
        **options: Unpack[AdapterOptions],
    ) -> None:
        """``shard_count``: the shards the registry reads cover (WS_SHARD_COUNT); ``registry_concurrency``
        bounds the parallel count updates of one subscribe or removal and the per-shard reads; clock is
        for tests; ``options``: the plumbing knobs (AdapterOptions)."""
        super().__init__(client, **options)
        self._keep_registry(registry_table, shard_count=shard_count, concurrency=registry_concurrency)
        self._connections = connections_table
        self._subscriptions = subscriptions_table
        self._clock = clock

    # --- connections ------------------------------------------------------------------------------

    def add_connection(self, record: ConnectionRecord, *, max_per_user: int | None = None) -> bool:
        self._call("put_item", TableName=self._connections, Item=connection_item(record))
        try:
            claimed = self._claim_slot(record, max_per_user)
        except StoreUnavailable:
            # The connect fails (503), so API Gateway never opens it: take the item back if we can.
            with contextlib.suppress(StoreUnavailable):
                self._delete_connection_item(record.connection_id)
            raise
        if not claimed:
            self._delete_connection_item(record.connection_id)
        return claimed

    def _delete_connection_item(self, connection_id: str) -> None:
        self._call("delete_item", TableName=self._connections, Key={"connection_id": attr_s(connection_id)})

    def _release_stale_slots(self, user_id: str) -> bool:
        """At the cap: remove the user's expired connections and drop slots whose connection item is gone
        (a removal that died between its writes); whether any slot was freed. Never drops the slot of a
        connection whose item exists and is live, so the cap holds."""
        response = self._call("get_item", TableName=self._registry, Key=user_key(user_id), ConsistentRead=True)
        slots = sorted(string_set(response.get("Item") or {}, "ids"))
        if not slots:
            return False
        items = self._get_connections(slots, ("connection_id", "expires_at"))
        floor_now = math.floor(self._clock())
        expired = [cid for cid in slots if cid in items and int(items[cid]["expires_at"]["N"]) <= floor_now]
        missing = [cid for cid in slots if cid not in items]
        for connection_id in expired:
            self.remove_connection(connection_id)
        released = self._release_slots(user_id, missing) if missing else set()
        return bool(expired or released)

    def get_connection(self, connection_id: str, *, now: float) -> ConnectionRecord | None:
        # Consistent: read right after $connect wrote it.
        item = self._get_live(self._connections, {"connection_id": attr_s(connection_id)}, now=now)
        return connection_from_item(item) if item is not None else None

    def connections_of_user(self, user_id: str, *, now: float) -> list[ConnectionRecord]:
        return list(self._live_connections(BY_USER_INDEX, "user_id", attr_s(user_id), now=now))

    def connections_in_shard(self, shard: int, *, now: float) -> Iterator[ConnectionRecord]:
        return self._live_connections(BY_SHARD_INDEX, "shard", attr_n(shard), now=now)

    def _live_connections(
        self, index: str, attribute: str, value: dict[str, str], *, now: float
    ) -> Iterator[ConnectionRecord]:
        """The live connections whose ``attribute`` (``index``'s key) is ``value``: a paged Query."""
        for item in self._query_live(self._connections, attribute, value, now=now, index=index):
            yield connection_from_item(item)

    def remove_connection(self, connection_id: str) -> int:
        # No expiry filter here: an expired connection's subscriptions are removed as well. The delete
        # hands back the item as it was: only the call that really deleted it releases counts, so a
        # $disconnect racing a 410 cleanup (or a retried one) counts down once.
        response = self._call(
            "delete_item",
            TableName=self._connections,
            Key={"connection_id": attr_s(connection_id)},
            ReturnValues="ALL_OLD",
        )
        old: Item | None = response.get("Attributes")
        if not old:
            return 0
        topics = sorted(topic_set(old))
        # Subscription items left behind by a crash here are orphans: delete_expired removes those.
        self._batch_write(
            self._subscriptions,
            [{"DeleteRequest": {"Key": {"topic": attr_s(t), "connection_id": attr_s(connection_id)}}} for t in topics],
        )
        shard = shard_of(old)
        bumps: list[tuple[Item, int]] = []
        if shard is not None:  # an item from before shards were assigned was never counted
            bumps = [(registry_key(shard, topic), -1) for topic in topics]
            if connection_id in self._release_slots(old["user_id"]["S"], [connection_id]):
                bumps.append((counter_key(shard, CONNECTIONS_COUNTER), -1))
        self._bump_all(bumps)
        return len(topics)

    # --- subscriptions ----------------------------------------------------------------------------

    def add_subscriptions(self, connection_id: str, topics: Sequence[str], *, expires_at: int) -> list[str] | None:
        wanted = unique_topics(topics)
        if not wanted:
            return self._current_topics(connection_id)
        before = self._change_topics(connection_id, "ADD", wanted)
        if before is None:
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
        held = topic_set(before)
        shard = shard_of(before)
        if shard is not None:
            self._bump_all([(registry_key(shard, topic), 1) for topic in wanted if topic not in held])
        return sorted(held.union(wanted))

    def remove_subscriptions(self, connection_id: str, topics: Sequence[str]) -> list[str] | None:
        gone = unique_topics(topics)
        self._batch_write(
            self._subscriptions,
            [{"DeleteRequest": {"Key": {"topic": attr_s(t), "connection_id": attr_s(connection_id)}}} for t in gone],
        )
        if not gone:
            return self._current_topics(connection_id)
        before = self._change_topics(connection_id, "DELETE", gone)
        if before is None:
            return None
        held = topic_set(before)
        shard = shard_of(before)
        if shard is not None:
            self._bump_all([(registry_key(shard, topic), -1) for topic in gone if topic in held])
        return sorted(held.difference(gone))

    def topics_of(self, connection_id: str, *, now: float) -> list[str]:
        record = self.get_connection(connection_id, now=now)
        return sorted(record.topics) if record is not None else []

    def _current_topics(self, connection_id: str) -> list[str] | None:
        response = self._call(
            "get_item", TableName=self._connections, Key={"connection_id": attr_s(connection_id)}, ConsistentRead=True
        )
        item = response.get("Item")
        return sorted(topic_set(item)) if item is not None else None

    def _change_topics(self, connection_id: str, action: str, topics: list[str]) -> Item | None:
        """ADD or DELETE topics in the connection's set atomically; the item as it was before, or None
        if no such connection (the condition keeps an update from creating a bare item)."""
        response = self._call_if(
            "update_item",
            TableName=self._connections,
            Key={"connection_id": attr_s(connection_id)},
            UpdateExpression=f"{action} #topics :topics",  # the action is one of two literals
            ConditionExpression="attribute_exists(#connection_id)",
            ExpressionAttributeNames={"#topics": "topics", "#connection_id": "connection_id"},
            ExpressionAttributeValues={":topics": {"SS": topics}},
            ReturnValues="ALL_OLD",
        )
        if response is None:
            return None
        before: Item = response.get("Attributes") or {}
        return before

    def subscribers(self, topic: str, *, now: float) -> list[str]:
        items = self._query_live(
            self._subscriptions,
            "topic",
            attr_s(topic),
            now=now,
            projection=["connection_id"],
        )
        return [item["connection_id"]["S"] for item in items]

    def subscribed_topics(self) -> list[str]:
        return self.topic_registry().topics()

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
            existing = self._get_connections(sorted({item["connection_id"]["S"] for item in live}), ("connection_id",))
            stale = [
                item
                for item in group
                if int(item["expires_at"]["N"]) <= floor_now or item["connection_id"]["S"] not in existing
            ]
            for item in stale:
                yield {"DeleteRequest": {"Key": {"topic": item["topic"], "connection_id": item["connection_id"]}}}

    def _get_connections(self, connection_ids: Sequence[str], attributes: Sequence[str]) -> dict[str, Item]:
        """Connection id → item (those attributes) of the ones that exist: consistent BatchGetItems."""
        keys = [{"connection_id": attr_s(connection_id)} for connection_id in connection_ids]
        items = self._get_items(self._connections, keys, attributes)
        return {item["connection_id"]["S"]: item for item in items}
