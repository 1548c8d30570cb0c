"""How a ConnectionRecord is stored: the connections table's item, both ways."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from chalicelib.adapters.dynamodb_registry import string_set
from chalicelib.adapters.dynamodb_support import Item, attr_n, attr_s, iso_utc
from chalicelib.ports import ConnectionRecord


def connection_item(record: ConnectionRecord) -> Item:
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
    return item


def unique_topics(topics: Sequence[str]) -> list[str]:
    # A BatchWriteItem with two requests for the same key is rejected as a whole.
    return list(dict.fromkeys(topics))


def connection_from_item(item: Item) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=item["connection_id"]["S"],
        user_id=item["user_id"]["S"],
        connected_at=datetime.fromisoformat(item["connected_at"]["S"]),
        expires_at=int(item["expires_at"]["N"]),
        source_ip=item["source_ip"]["S"] if "source_ip" in item else None,
        user_agent=item["user_agent"]["S"] if "user_agent" in item else None,
        topics=topic_set(item),
        message_format=item["format"]["S"] if "format" in item else "spec",  # items written before formats existed
        shard=shard_of(item) or 0,
        token_expires_at=int(item["token_expires_at"]["N"]) if "token_expires_at" in item else None,
    )


def topic_set(item: Item) -> frozenset[str]:
    return string_set(item, "topics")


def shard_of(item: Item) -> int | None:
    # None: an item written before connections were given shards (never counted in the registry).
    return int(item["shard"]["N"]) if "shard" in item else None
