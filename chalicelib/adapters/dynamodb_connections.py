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
- Registry table (PK ``pk``, SK ``sk``):
  ``REG#<shard>``/``<topic>`` holds ``count``, the topic's subscribers in that shard;
  ``COUNT#<shard>``/``connections`` and ``COUNT#<p>``/``users`` (p: a hash of the user id over
  USER_COUNT_PARTITIONS) hold the totals /ws/stats shows; ``USER#<user>``/``slots`` holds ``ids``, the
  user's connection ids (the per-user cap). Partitioned per shard, the subscribe/unsubscribe writes
  spread over the shards' partitions rather than one hot key, and "which topics have subscribers" is one
  Query per shard (SHARD_COUNT Queries, however many topics and connections exist). Counts move with
  ``ADD`` (atomic); a decrement is conditional on the count covering it, so a count never goes below
  zero. The counts are not written in one transaction with the connection item (TransactWriteItems
  cannot return the old item, and one refused decrement would cancel the whole removal), so a process
  dying between the writes, or a decrement arriving before its increment, leaves a count off by one:
  ``repair_registry`` (the daily cleanup) recounts each shard from its connections and rewrites a
  drifted count only if it did not move meanwhile.
- The per-user cap is a conditional ``ADD`` of the connection id to the user's ``ids`` set,
  ``size(ids) < cap``: two simultaneous connects of one user cannot both pass, unlike a count followed
  by a put. The connection item is put first and its slot claimed second, and a removal deletes the item
  first and releases the slot second, so a slot whose item is missing is a leftover of a removal that
  died midway: when a connect finds the user at the cap it drops such slots (and removes the user's
  expired connections) and tries once more. The connection and user totals move only when a slot is
  claimed or released, so a connection counts once however often its removal is retried.
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
  UnprocessedItems are retried there with a capped exponential backoff. BatchGetItem's UnprocessedKeys
  get the same backoff here.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from aws_lambda_powertools import Logger

from chalicelib.adapters.dynamodb_support import NOT_EXPIRED, DynamoDBAdapter, Item, attr_n, attr_now, attr_s, iso_utc
from chalicelib.errors import StoreUnavailable
from chalicelib.ports import ConnectionRecord, RegistryRepair, StreamingStats, TopicRegistry, shard_for

logger = Logger(child=True)

BATCH_GET_LIMIT = 100  # DynamoDB's maximum number of keys in one BatchGetItem
BY_USER_INDEX = "by-user"
BY_SHARD_INDEX = "by-shard"
REGISTRY_PREFIX = "REG#"
COUNTER_PREFIX = "COUNT#"
USER_PREFIX = "USER#"
CONNECTIONS_COUNTER = "connections"
USERS_COUNTER = "users"
# Fixed, unlike the shard count: a user's counter partition must not move when WS_SHARD_COUNT changes.
USER_COUNT_PARTITIONS = 16

_T = TypeVar("_T")
_R = TypeVar("_R")


class DynamoDBConnectionStore(DynamoDBAdapter):
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
        page_size: int | None = None,
        batch_attempts: int = 6,
        backoff_base_seconds: float = 0.05,
        backoff_cap_seconds: float = 1.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``shard_count``: the shards the registry reads cover (WS_SHARD_COUNT); ``registry_concurrency``
        bounds the parallel count updates of one subscribe or removal and the per-shard reads;
        ``page_size`` sets Limit on Queries and Scans (None: DynamoDB's 1 MB pages); the batch_* and
        backoff_* knobs bound the UnprocessedItems retries; clock and sleep are for tests."""
        super().__init__(
            client,
            page_size=page_size,
            batch_attempts=batch_attempts,
            backoff_base_seconds=backoff_base_seconds,
            backoff_cap_seconds=backoff_cap_seconds,
            sleep=sleep,
        )
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        if registry_concurrency < 1:
            raise ValueError("registry_concurrency must be at least 1")
        self._connections = connections_table
        self._subscriptions = subscriptions_table
        self._registry = registry_table
        self._shard_count = shard_count
        self._registry_concurrency = registry_concurrency
        self._clock = clock

    # --- connections ------------------------------------------------------------------------------

    def add_connection(self, record: ConnectionRecord, *, max_per_user: int | None = None) -> bool:
        item: Item = {
            "connection_id": attr_s(record.connection_id),
            "user_id": attr_s(record.user_id),
            "connected_at": attr_s(iso_utc(record.connected_at)),
            "expires_at": attr_n(record.expires_at),
            "format": attr_s(record.message_format),
            "shard": attr_n(record.shard),
        }
        if record.source_ip is not None:
            item["source_ip"] = attr_s(record.source_ip)
        if record.user_agent is not None:
            item["user_agent"] = attr_s(record.user_agent)
        if record.token_expires_at is not None:
            item["token_expires_at"] = attr_n(record.token_expires_at)
        self._call("put_item", TableName=self._connections, Item=item)
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

    def _claim_slot(self, record: ConnectionRecord, cap: int | None) -> bool:
        """Add the connection to its user's slots, if the user holds fewer than ``cap``; counts it."""
        names = {"#ids": "ids", "#expires_at": "expires_at"}
        values: Item = {":ids": {"SS": [record.connection_id]}, ":expires_at": attr_n(record.expires_at)}
        params: dict[str, Any] = {
            "TableName": self._registry,
            "Key": _user_key(record.user_id),
            # expires_at: the latest connection's expiry, so TTL drops the item after its last connection.
            "UpdateExpression": "ADD #ids :ids SET #expires_at = :expires_at",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_OLD",  # the whole (small) item: UPDATED_OLD omits an unchanged set
        }
        if cap is not None:
            # contains(): a retried connect of the same connection is not refused by its own slot.
            params["ConditionExpression"] = "attribute_not_exists(#ids) OR size(#ids) < :cap OR contains(#ids, :id)"
            values[":cap"] = attr_n(cap)
            values[":id"] = attr_s(record.connection_id)
        response = self._call_if("update_item", **params)
        if response is None and self._release_stale_slots(record.user_id):
            response = self._call_if("update_item", **params)
        if response is None:
            return False
        held = _string_set(response.get("Attributes") or {}, "ids")
        if record.connection_id not in held:  # not a retry of a connect that already counted
            bumps = [(_counter_key(record.shard, CONNECTIONS_COUNTER), 1)]
            if not held:  # the user's first connection: one user more
                bumps.append((_counter_key(_user_partition(record.user_id), USERS_COUNTER), 1))
            self._bump_all(bumps)
        return True

    def _release_stale_slots(self, user_id: str) -> bool:
        """At the cap: remove the user's expired connections and drop slots whose connection item is gone
        (a removal that died between its writes); whether any slot was freed. Never drops the slot of a
        connection whose item exists and is live, so the cap holds."""
        response = self._call("get_item", TableName=self._registry, Key=_user_key(user_id), ConsistentRead=True)
        slots = sorted(_string_set(response.get("Item") or {}, "ids"))
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

    def _release_slots(self, user_id: str, connection_ids: Sequence[str]) -> set[str]:
        """Remove these connection ids from the user's slots; the ones that were there."""
        response = self._call_if(
            "update_item",
            TableName=self._registry,
            Key=_user_key(user_id),
            UpdateExpression="DELETE #ids :ids",
            ConditionExpression="attribute_exists(#ids)",  # no bare item for a user without slots
            ExpressionAttributeNames={"#ids": "ids"},
            ExpressionAttributeValues={":ids": {"SS": sorted(set(connection_ids))}},
            ReturnValues="ALL_OLD",
        )
        if response is None:
            return set()
        held = _string_set(response.get("Attributes") or {}, "ids")
        released = set(held.intersection(connection_ids))
        if released and held <= released:  # the user's last slot went: one user fewer
            self._bump_all([(_counter_key(_user_partition(user_id), USERS_COUNTER), -1)])
        return released

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

    def connections_in_shard(self, shard: int, *, now: float) -> Iterator[ConnectionRecord]:
        for item in self._paginate(
            "query",
            TableName=self._connections,
            IndexName=BY_SHARD_INDEX,
            KeyConditionExpression="#shard = :shard",
            FilterExpression=NOT_EXPIRED,
            ExpressionAttributeNames={"#shard": "shard", "#expires_at": "expires_at"},
            ExpressionAttributeValues={":shard": attr_n(shard), ":now": attr_now(now)},
        ):
            yield _connection_from_item(item)

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
        topics = sorted(_topic_set(old))
        # Subscription items left behind by a crash here are orphans: delete_expired removes those.
        self._batch_write(
            self._subscriptions,
            [{"DeleteRequest": {"Key": {"topic": attr_s(t), "connection_id": attr_s(connection_id)}}} for t in topics],
        )
        shard = _shard_of(old)
        bumps: list[tuple[Item, int]] = []
        if shard is not None:  # an item from before shards were assigned was never counted
            bumps = [(_registry_key(shard, topic), -1) for topic in topics]
            if connection_id in self._release_slots(old["user_id"]["S"], [connection_id]):
                bumps.append((_counter_key(shard, CONNECTIONS_COUNTER), -1))
        self._bump_all(bumps)
        return len(topics)

    # --- subscriptions ----------------------------------------------------------------------------

    def add_subscriptions(self, connection_id: str, topics: Sequence[str], *, expires_at: int) -> list[str] | None:
        wanted = _unique(topics)
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
        held = _topic_set(before)
        shard = _shard_of(before)
        if shard is not None:
            self._bump_all([(_registry_key(shard, topic), 1) for topic in wanted if topic not in held])
        return sorted(held.union(wanted))

    def remove_subscriptions(self, connection_id: str, topics: Sequence[str]) -> list[str] | None:
        gone = _unique(topics)
        self._batch_write(
            self._subscriptions,
            [{"DeleteRequest": {"Key": {"topic": attr_s(t), "connection_id": attr_s(connection_id)}}} for t in gone],
        )
        if not gone:
            return self._current_topics(connection_id)
        before = self._change_topics(connection_id, "DELETE", gone)
        if before is None:
            return None
        held = _topic_set(before)
        shard = _shard_of(before)
        if shard is not None:
            self._bump_all([(_registry_key(shard, topic), -1) for topic in gone if topic in held])
        return sorted(held.difference(gone))

    def topics_of(self, connection_id: str, *, now: float) -> list[str]:
        record = self.get_connection(connection_id, now=now)
        return sorted(record.topics) if record is not None else []

    def _current_topics(self, connection_id: str) -> list[str] | None:
        response = self._call(
            "get_item", TableName=self._connections, Key={"connection_id": attr_s(connection_id)}, ConsistentRead=True
        )
        item = response.get("Item")
        return sorted(_topic_set(item)) if item is not None else None

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

    # --- the registry -----------------------------------------------------------------------------

    def subscribed_topics(self) -> list[str]:
        return self.topic_registry().topics()

    def topic_registry(self) -> TopicRegistry:
        shards = range(self._shard_count)
        found = self._parallel(lambda shard: self._registry_partition(shard, positive_only=True), shards)
        return TopicRegistry({shard: counts for shard, counts in zip(shards, found, strict=True) if counts})

    def _registry_partition(self, shard: int, *, positive_only: bool) -> dict[str, int]:
        """topic → count of one shard's registry partition: one paged Query."""
        params: dict[str, Any] = {
            "TableName": self._registry,
            "KeyConditionExpression": "#pk = :pk",
            "ProjectionExpression": "#sk, #count",
            "ExpressionAttributeNames": {"#pk": "pk", "#sk": "sk", "#count": "count"},
            "ExpressionAttributeValues": {":pk": attr_s(f"{REGISTRY_PREFIX}{shard}")},
        }
        if positive_only:
            params["FilterExpression"] = "#count > :zero"
            params["ExpressionAttributeValues"][":zero"] = attr_n(0)
        else:  # the repair compares against exactly what is stored
            params["ConsistentRead"] = True
        return {item["sk"]["S"]: int(item["count"]["N"]) for item in self._paginate("query", **params)}

    def _bump_all(self, bumps: Sequence[tuple[Item, int]]) -> None:
        """Add each delta to its registry count (in parallel: a 50-topic subscribe is 50 updates)."""
        self._parallel(lambda bump: self._bump(*bump), bumps)

    def _bump(self, key: Item, delta: int) -> bool:
        """Add ``delta`` to the count at ``key``; a decrement only if the count covers it (never below
        zero). False when refused: the count was already lower (repair_registry settles it)."""
        params: dict[str, Any] = {
            "TableName": self._registry,
            "Key": key,
            "UpdateExpression": "ADD #count :delta",
            "ExpressionAttributeNames": {"#count": "count"},
            "ExpressionAttributeValues": {":delta": attr_n(delta)},
        }
        if delta < 0:
            params["ConditionExpression"] = "#count >= :needed"
            params["ExpressionAttributeValues"][":needed"] = attr_n(-delta)
        if self._call_if("update_item", **params) is not None:
            return True
        logger.info("registry count already at zero", extra={"pk": key["pk"]["S"]})
        return False

    def _parallel(self, work: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``work`` over ``items`` on at most registry_concurrency threads (boto3 clients are thread-safe)."""
        if len(items) <= 1:
            return [work(item) for item in items]
        workers = min(self._registry_concurrency, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registry") as pool:
            return list(pool.map(work, items))

    def repair_registry(self, *, now: float) -> RegistryRepair:
        # The totals are read before the recount: a rewrite is conditional on the count still holding
        # what was read, so a subscribe or connect during the recount makes it a skip, not a wrong value.
        totals_keys = [_counter_key(shard, CONNECTIONS_COUNTER) for shard in range(self._shard_count)]
        totals_keys += [_counter_key(p, USERS_COUNTER) for p in range(USER_COUNT_PARTITIONS)]
        totals = {
            (item["pk"]["S"], item["sk"]["S"]): int(item["count"]["N"])
            for item in self._get_items(self._registry, totals_keys, ("pk", "sk", "count"))
        }
        outcomes: Counter[str] = Counter()
        users: set[str] = set()
        for shard in range(self._shard_count):
            stored = self._registry_partition(shard, positive_only=False)
            counted: Counter[str] = Counter()
            connections = 0
            for record in self.connections_in_shard(shard, now=now):
                connections += 1
                counted.update(record.topics)
                users.add(record.user_id)
            for topic in sorted(stored.keys() | counted.keys()):
                outcomes["topic_" + self._settle(_registry_key(shard, topic), stored.get(topic), counted[topic])] += 1
            key = _counter_key(shard, CONNECTIONS_COUNTER)
            outcomes[self._settle(key, totals.get(_key_pair(key)), connections)] += 1
        per_partition = Counter(_user_partition(user) for user in users)
        for partition in range(USER_COUNT_PARTITIONS):
            key = _counter_key(partition, USERS_COUNTER)
            outcomes[self._settle(key, totals.get(_key_pair(key)), per_partition[partition])] += 1
        return RegistryRepair(
            shards=self._shard_count,
            topic_counts_fixed=outcomes["topic_fixed"],
            counters_fixed=outcomes["fixed"],
            skipped=outcomes["topic_skipped"] + outcomes["skipped"],
        )

    def _settle(self, key: Item, stored: int | None, counted: int) -> str:
        """Make the count at ``key`` ``counted`` if it still holds ``stored`` (None: no item): "ok" (it was
        right), "fixed", or "skipped" (it moved meanwhile). A zero count's item is deleted."""
        if (stored is None and counted == 0) or (stored == counted and counted > 0):
            return "ok"
        names = {"#count": "count"}
        if counted == 0:
            done = self._call_if(
                "delete_item",
                TableName=self._registry,
                Key=key,
                ConditionExpression="#count = :stored",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={":stored": attr_n(stored or 0)},
            )
        else:
            values: Item = {":counted": attr_n(counted)}
            if stored is None:
                condition = "attribute_not_exists(#count)"
            else:
                condition = "#count = :stored"
                values[":stored"] = attr_n(stored)
            done = self._call_if(
                "update_item",
                TableName=self._registry,
                Key=key,
                UpdateExpression="SET #count = :counted",
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        if done is None:
            return "skipped"
        # A leftover zero item is garbage, not drift.
        return "ok" if stored == 0 and counted == 0 else "fixed"

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
                raise StoreUnavailable(f"connection store: batch_get_item left {left} keys unprocessed")
        return found

    # --- operator view ----------------------------------------------------------------------------

    def stats(self, *, top: int) -> StreamingStats:
        registry = self.topic_registry()
        keys = [_counter_key(shard, CONNECTIONS_COUNTER) for shard in range(self._shard_count)]
        keys += [_counter_key(p, USERS_COUNTER) for p in range(USER_COUNT_PARTITIONS)]
        totals: Counter[str] = Counter()
        for item in self._get_items(self._registry, keys, ("sk", "count")):
            totals[item["sk"]["S"]] += int(item["count"]["N"])
        ranked = sorted(registry.totals().items(), key=lambda pair: (-pair[1], pair[0]))[: max(top, 0)]
        return StreamingStats(
            open_connections=totals[CONNECTIONS_COUNTER],
            distinct_users=totals[USERS_COUNTER],
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
        shard=_shard_of(item) or 0,
        token_expires_at=int(item["token_expires_at"]["N"]) if "token_expires_at" in item else None,
    )


def _topic_set(item: Item) -> frozenset[str]:
    return _string_set(item, "topics")


def _string_set(item: Item, name: str) -> frozenset[str]:
    # DynamoDB has no empty sets: deleting the last element removes the attribute.
    return frozenset(item.get(name, {}).get("SS", ()))


def _shard_of(item: Item) -> int | None:
    # None: an item written before connections were given shards (never counted in the registry).
    return int(item["shard"]["N"]) if "shard" in item else None


def _user_partition(user_id: str) -> int:
    return shard_for(user_id, USER_COUNT_PARTITIONS)


def _registry_key(shard: int, topic: str) -> Item:
    return {"pk": attr_s(f"{REGISTRY_PREFIX}{shard}"), "sk": attr_s(topic)}


def _counter_key(partition: int, name: str) -> Item:
    return {"pk": attr_s(f"{COUNTER_PREFIX}{partition}"), "sk": attr_s(name)}


def _user_key(user_id: str) -> Item:
    return {"pk": attr_s(f"{USER_PREFIX}{user_id}"), "sk": attr_s("slots")}


def _key_pair(key: Item) -> tuple[str, str]:
    return key["pk"]["S"], key["sk"]["S"]
