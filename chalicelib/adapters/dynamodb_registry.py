"""The connection store's registry table (PK ``pk``, SK ``sk``): who subscribes to what, per shard, the
totals /ws/stats shows, and each user's connection slots. DynamoDBConnectionStore builds on it.

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
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aws_lambda_powertools import Logger

from chalicelib.adapters.dynamodb_support import DynamoDBAdapter, Item, attr_n, attr_s
from chalicelib.ports import ConnectionRecord, RegistryRepair, StreamingStats, TopicRegistry, shard_for

logger = Logger(child=True)

REGISTRY_PREFIX = "REG#"
COUNTER_PREFIX = "COUNT#"
USER_PREFIX = "USER#"
CONNECTIONS_COUNTER = "connections"
USERS_COUNTER = "users"
# Fixed, unlike the shard count: a user's counter partition must not move when WS_SHARD_COUNT changes.
USER_COUNT_PARTITIONS = 16

_T = TypeVar("_T")
_R = TypeVar("_R")


class RegistryTable(DynamoDBAdapter):
    """The registry's reads and writes; the connection store supplies the table, the shard count and
    the reads of the connections table the registry is recounted from."""

    _registry: str
    _shard_count: int
    _registry_concurrency: int

    def _keep_registry(self, table: str, *, shard_count: int, concurrency: int) -> None:
        """The registry's own settings, checked once (the connection store's constructor passes them)."""
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        if concurrency < 1:
            raise ValueError("registry_concurrency must be at least 1")
        self._registry = table
        self._shard_count = shard_count
        self._registry_concurrency = concurrency

    def connections_in_shard(self, shard: int, *, now: float) -> Iterator[ConnectionRecord]:
        raise NotImplementedError

    def _release_stale_slots(self, user_id: str) -> bool:
        raise NotImplementedError

    # --- the user's slots (the per-user cap) --------------------------------------------------------

    def _claim_slot(self, record: ConnectionRecord, cap: int | None) -> bool:
        """Add the connection to its user's slots, if the user holds fewer than ``cap``; counts it."""
        names = {"#ids": "ids", "#expires_at": "expires_at"}
        values: Item = {":ids": {"SS": [record.connection_id]}, ":expires_at": attr_n(record.expires_at)}
        params: dict[str, Any] = {
            "TableName": self._registry,
            "Key": user_key(record.user_id),
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
        held = string_set(response.get("Attributes") or {}, "ids")
        if record.connection_id not in held:  # not a retry of a connect that already counted
            bumps = [(counter_key(record.shard, CONNECTIONS_COUNTER), 1)]
            if not held:  # the user's first connection: one user more
                bumps.append((counter_key(user_partition(record.user_id), USERS_COUNTER), 1))
            self._bump_all(bumps)
        return True

    def _release_slots(self, user_id: str, connection_ids: Sequence[str]) -> set[str]:
        """Remove these connection ids from the user's slots; the ones that were there."""
        response = self._call_if(
            "update_item",
            TableName=self._registry,
            Key=user_key(user_id),
            UpdateExpression="DELETE #ids :ids",
            ConditionExpression="attribute_exists(#ids)",  # no bare item for a user without slots
            ExpressionAttributeNames={"#ids": "ids"},
            ExpressionAttributeValues={":ids": {"SS": sorted(set(connection_ids))}},
            ReturnValues="ALL_OLD",
        )
        if response is None:
            return set()
        held = string_set(response.get("Attributes") or {}, "ids")
        released = set(held.intersection(connection_ids))
        if released and held <= released:  # the user's last slot went: one user fewer
            self._bump_all([(counter_key(user_partition(user_id), USERS_COUNTER), -1)])
        return released

    # --- the counts -------------------------------------------------------------------------------

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
        totals_keys = [counter_key(shard, CONNECTIONS_COUNTER) for shard in range(self._shard_count)]
        totals_keys += [counter_key(p, USERS_COUNTER) for p in range(USER_COUNT_PARTITIONS)]
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
                outcomes["topic_" + self._settle(registry_key(shard, topic), stored.get(topic), counted[topic])] += 1
            key = counter_key(shard, CONNECTIONS_COUNTER)
            outcomes[self._settle(key, totals.get(key_pair(key)), connections)] += 1
        per_partition = Counter(user_partition(user) for user in users)
        for partition in range(USER_COUNT_PARTITIONS):
            key = counter_key(partition, USERS_COUNTER)
            outcomes[self._settle(key, totals.get(key_pair(key)), per_partition[partition])] += 1
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
        where: dict[str, Any] = {
            "TableName": self._registry,
            "Key": key,
            "ExpressionAttributeNames": {"#count": "count"},
        }
        if counted == 0:
            values: Item = {":stored": attr_n(stored or 0)}
            done = self._call_if(
                "delete_item", ConditionExpression="#count = :stored", ExpressionAttributeValues=values, **where
            )
        else:
            values = {":counted": attr_n(counted)}
            if stored is None:
                condition = "attribute_not_exists(#count)"
            else:
                condition = "#count = :stored"
                values[":stored"] = attr_n(stored)
            done = self._call_if(
                "update_item",
                UpdateExpression="SET #count = :counted",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                **where,
            )
        if done is None:
            return "skipped"
        # A leftover zero item is garbage, not drift.
        return "ok" if stored == 0 and counted == 0 else "fixed"

    def stats(self, *, top: int) -> StreamingStats:
        registry = self.topic_registry()
        keys = [counter_key(shard, CONNECTIONS_COUNTER) for shard in range(self._shard_count)]
        keys += [counter_key(p, USERS_COUNTER) for p in range(USER_COUNT_PARTITIONS)]
        totals: Counter[str] = Counter()
        for item in self._get_items(self._registry, keys, ("sk", "count")):
            totals[item["sk"]["S"]] += int(item["count"]["N"])
        ranked = sorted(registry.totals().items(), key=lambda pair: (-pair[1], pair[0]))[: max(top, 0)]
        return StreamingStats(
            open_connections=totals[CONNECTIONS_COUNTER],
            distinct_users=totals[USERS_COUNTER],
            subscribers_by_topic=dict(ranked),
        )


def string_set(item: Item, name: str) -> frozenset[str]:
    # DynamoDB has no empty sets: deleting the last element removes the attribute.
    return frozenset(item.get(name, {}).get("SS", ()))


def user_partition(user_id: str) -> int:
    return shard_for(user_id, USER_COUNT_PARTITIONS)


def registry_key(shard: int, topic: str) -> Item:
    return {"pk": attr_s(f"{REGISTRY_PREFIX}{shard}"), "sk": attr_s(topic)}


def counter_key(partition: int, name: str) -> Item:
    return {"pk": attr_s(f"{COUNTER_PREFIX}{partition}"), "sk": attr_s(name)}


def user_key(user_id: str) -> Item:
    return {"pk": attr_s(f"{USER_PREFIX}{user_id}"), "sk": attr_s("slots")}


def key_pair(key: Item) -> tuple[str, str]:
    return key["pk"]["S"], key["sk"]["S"]
