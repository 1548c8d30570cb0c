"""The ConnectionStore contract: DynamoDBConnectionStore against moto (in-process), on tables created from
infra/template.yaml, and the InMemoryConnectionStore fake through every test that does not look at DynamoDB
itself (``store`` is parametrised over both; ``real_store`` is the DynamoDB adapter alone)."""

from __future__ import annotations

import re
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.adapters.dynamodb_connections import DynamoDBConnectionStore
from chalicelib.errors import StoreUnavailable
from chalicelib.ports import ConnectionRecord, ConnectionStore, shard_for
from tests.fakes.connections import InMemoryConnectionStore
from tests.fakes.dynamodb import (
    LOCAL_TABLES,
    RecordingClient,
    SerializedClient,
    dynamodb_operations,
    table_fixtures,
    unreachable_client,
)

# Placeholders, punctuation, operators and the functions the adapter uses: no name or value in the text.
_EXPRESSION_TOKEN = re.compile(
    r"(?:\s*(?:#[a-z_]+|:[a-z_]+|,|<=|>=|=|<|>|\(|\)|AND|OR|ADD|DELETE|SET"
    r"|attribute_exists|attribute_not_exists|size|contains))+"
)

NOW = 1_700_000_000.5
LATER = 1_700_003_600  # an hour after NOW: alive
PAST = 1_699_999_000  # before NOW: expired
CONNECTIONS = LOCAL_TABLES["ConnectionsTable"]
SUBSCRIPTIONS = LOCAL_TABLES["SubscriptionsTable"]
REGISTRY = LOCAL_TABLES["RegistryTable"]
SHARDS = 4


dynamodb, recorder = table_fixtures(CONNECTIONS, SUBSCRIPTIONS, REGISTRY)


def _store(client: Any, **kwargs: Any) -> DynamoDBConnectionStore:
    kwargs.setdefault("sleep", lambda _seconds: None)
    kwargs.setdefault("clock", lambda: NOW)
    kwargs.setdefault("shard_count", SHARDS)
    return DynamoDBConnectionStore(client, CONNECTIONS, SUBSCRIPTIONS, REGISTRY, **kwargs)


@pytest.fixture
def real_store(recorder: RecordingClient) -> DynamoDBConnectionStore:
    return _store(recorder)


@pytest.fixture(params=["dynamodb", "in_memory"])
def store(request: pytest.FixtureRequest) -> ConnectionStore:
    if request.param == "in_memory":
        return InMemoryConnectionStore(shard_count=SHARDS, clock=lambda: NOW)
    real: DynamoDBConnectionStore = request.getfixturevalue("real_store")
    return real


def _record(connection_id: str, user_id: str = "u1", *, expires_at: int = LATER, **kwargs: Any) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=connection_id,
        user_id=user_id,
        connected_at=datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        expires_at=expires_at,
        **kwargs,
    )


def _subscribe(store: ConnectionStore, connection_id: str, topics: list[str], *, expires_at: int) -> list[str] | None:
    """Subscribe, first registering the connection (with the same expiry, a user of its own) if it is
    not there yet."""
    if store.get_connection(connection_id, now=PAST - 10_000) is None:
        store.add_connection(_record(connection_id, f"user-of-{connection_id}", expires_at=expires_at))
    return store.add_subscriptions(connection_id, topics, expires_at=expires_at)


def test_it_implements_the_port(store: ConnectionStore) -> None:
    port: ConnectionStore = store  # mypy checks the structure
    assert port is store


# --- connections ----------------------------------------------------------------------------------


def test_add_then_get_returns_the_record(real_store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    record = _record("c1", source_ip="203.0.113.9", user_agent='Mozilla/5.0 "quoted"')
    real_store.add_connection(record)

    assert real_store.get_connection("c1", now=NOW) == record
    item = dynamodb.get_item(TableName=CONNECTIONS, Key={"connection_id": {"S": "c1"}})["Item"]
    assert item["connected_at"] == {"S": "2023-11-14T22:13:20+00:00"}
    assert item["expires_at"] == {"N": str(LATER)}


def test_optional_fields_are_omitted_when_none(real_store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    real_store.add_connection(_record("c1"))

    item = dynamodb.get_item(TableName=CONNECTIONS, Key={"connection_id": {"S": "c1"}})["Item"]
    assert "source_ip" not in item
    assert "user_agent" not in item
    got = real_store.get_connection("c1", now=NOW)
    assert got is not None
    assert got.source_ip is None
    assert got.user_agent is None


def test_the_message_format_is_stored_and_an_item_without_one_reads_as_spec(
    real_store: DynamoDBConnectionStore, dynamodb: Any
) -> None:
    real_store.add_connection(_record("b1", message_format="batch"))
    got = real_store.get_connection("b1", now=NOW)
    assert got is not None
    assert got.message_format == "batch"
    item = dynamodb.get_item(TableName=CONNECTIONS, Key={"connection_id": {"S": "b1"}})["Item"]
    assert item["format"] == {"S": "batch"}
    # A connection stored before formats existed has no attribute: it gets the spec's messages.
    dynamodb.update_item(
        TableName=CONNECTIONS,
        Key={"connection_id": {"S": "b1"}},
        UpdateExpression="REMOVE #format",
        ExpressionAttributeNames={"#format": "format"},
    )
    old = real_store.get_connection("b1", now=NOW)
    assert old is not None
    assert old.message_format == "spec"


def test_connected_at_is_stored_in_utc(store: ConnectionStore) -> None:
    paris = timezone(timedelta(hours=1))
    record = ConnectionRecord("c1", "u1", datetime(2023, 11, 14, 23, 13, 20, tzinfo=paris), LATER)
    store.add_connection(record)

    got = store.get_connection("c1", now=NOW)
    assert got is not None
    assert got.connected_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert got.connected_at.utcoffset() == timedelta(0)


def test_unknown_connection_is_none(store: ConnectionStore) -> None:
    assert store.get_connection("nope", now=NOW) is None


def test_expired_connection_is_filtered_on_get(store: ConnectionStore) -> None:
    store.add_connection(_record("old", expires_at=PAST))
    store.add_connection(_record("edge", expires_at=int(NOW)))  # expires_at <= now: expired

    assert store.get_connection("old", now=NOW) is None
    assert store.get_connection("edge", now=NOW) is None
    assert store.get_connection("old", now=PAST - 1) is not None


def test_connections_of_user_queries_the_index_and_filters_expired(
    real_store: DynamoDBConnectionStore, recorder: RecordingClient
) -> None:
    real_store.add_connection(_record("c1", "u1"))
    real_store.add_connection(_record("c2", "u1"))
    real_store.add_connection(_record("c3", "u1", expires_at=PAST))
    real_store.add_connection(_record("c4", "u2"))
    recorder.calls.clear()

    found = real_store.connections_of_user("u1", now=NOW)

    assert sorted(r.connection_id for r in found) == ["c1", "c2"]
    assert recorder.operations() == ["query"]
    assert recorder.calls[0][1]["IndexName"] == "by-user"
    assert real_store.connections_of_user("nobody", now=NOW) == []


# --- subscriptions --------------------------------------------------------------------------------


def test_subscriptions_add_remove_topics_of_and_subscribers(store: ConnectionStore) -> None:
    _subscribe(store, "c1", ["quote:AAPL", "channel:indices"], expires_at=LATER)
    _subscribe(store, "c2", ["quote:AAPL"], expires_at=LATER)

    assert sorted(store.topics_of("c1", now=NOW)) == ["channel:indices", "quote:AAPL"]
    assert sorted(store.subscribers("quote:AAPL", now=NOW)) == ["c1", "c2"]
    assert store.subscribers("channel:indices", now=NOW) == ["c1"]

    store.remove_subscriptions("c1", ["quote:AAPL"])

    assert store.topics_of("c1", now=NOW) == ["channel:indices"]
    assert store.subscribers("quote:AAPL", now=NOW) == ["c2"]
    assert store.subscribers("quote:NONE", now=NOW) == []


def test_subscription_items_carry_expiry_and_creation_time(real_store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    _subscribe(real_store, "c1", ["quote:AAPL"], expires_at=LATER)

    item = dynamodb.get_item(TableName=SUBSCRIPTIONS, Key={"topic": {"S": "quote:AAPL"}, "connection_id": {"S": "c1"}})[
        "Item"
    ]
    assert item["expires_at"] == {"N": str(LATER)}
    assert datetime.fromisoformat(item["created_at"]["S"]) == datetime.fromtimestamp(NOW, tz=UTC)


def test_expired_subscriptions_are_filtered(store: ConnectionStore) -> None:
    _subscribe(store, "alive", ["quote:AAPL"], expires_at=LATER)
    _subscribe(store, "dead", ["quote:AAPL", "quote:MSFT"], expires_at=PAST)

    assert store.subscribers("quote:AAPL", now=NOW) == ["alive"]
    assert store.subscribers("quote:MSFT", now=NOW) == []
    assert store.topics_of("dead", now=NOW) == []
    assert store.topics_of("alive", now=NOW) == ["quote:AAPL"]


def test_subscribing_twice_and_removing_unknown_are_harmless(store: ConnectionStore) -> None:
    _subscribe(store, "c1", ["quote:AAPL", "quote:AAPL"], expires_at=LATER)  # duplicate in one call
    _subscribe(store, "c1", ["quote:AAPL"], expires_at=LATER)  # and again

    assert store.subscribers("quote:AAPL", now=NOW) == ["c1"]
    store.remove_subscriptions("c1", ["quote:NEVER"])
    store.remove_subscriptions("nobody", ["quote:AAPL"])
    _subscribe(store, "c1", [], expires_at=LATER)
    store.remove_subscriptions("c1", [])
    assert store.subscribers("quote:AAPL", now=NOW) == ["c1"]


def test_more_than_25_topics_are_written_in_chunks(
    real_store: DynamoDBConnectionStore, recorder: RecordingClient
) -> None:
    topics = [f"quote:SYM{i:03d}" for i in range(60)]

    _subscribe(real_store, "c1", topics, expires_at=LATER)

    batches = [params for name, params in recorder.calls if name == "batch_write_item"]
    assert [len(b["RequestItems"][SUBSCRIPTIONS]) for b in batches] == [25, 25, 10]
    assert sorted(real_store.topics_of("c1", now=NOW)) == topics

    recorder.calls.clear()
    real_store.remove_subscriptions("c1", topics[:55])

    # 3 batches, the topic set's update, and one registry count per topic really removed.
    assert recorder.operations() == ["batch_write_item"] * 3 + ["update_item"] * 56
    assert [p["TableName"] for _, p in recorder.calls[4:]] == [REGISTRY] * 55
    assert sorted(real_store.topics_of("c1", now=NOW)) == topics[55:]


def test_unprocessed_items_are_retried_with_backoff(dynamodb: Any) -> None:
    throttled = RecordingClient(dynamodb, unprocessed_rounds=3)
    sleeps: list[float] = []
    store = _store(throttled, sleep=sleeps.append, backoff_base_seconds=0.05, backoff_cap_seconds=0.15)
    topics = [f"quote:T{i}" for i in range(5)]

    _subscribe(store, "c1", topics, expires_at=LATER)

    assert throttled.operations().count("batch_write_item") == 4
    assert sleeps == [0.05, 0.1, 0.15]  # exponential, capped
    assert sorted(store.topics_of("c1", now=NOW)) == topics


def test_items_still_unprocessed_after_the_last_attempt_raise(dynamodb: Any) -> None:
    throttled = RecordingClient(dynamodb, unprocessed_rounds=100)
    store = _store(throttled, batch_attempts=3)

    with pytest.raises(StoreUnavailable) as caught:
        _subscribe(store, "c1", [f"quote:T{i}" for i in range(10)], expires_at=LATER)

    assert throttled.operations().count("batch_write_item") == 3
    assert caught.value.status_code == 503
    assert caught.value.code == "store_unavailable"


# --- fan-out reads --------------------------------------------------------------------------------


def _write_subscriptions(dynamodb: Any, topic: str, connection_ids: list[str], *, expires_at: int) -> None:
    """Subscription items written directly in batches: the paging tests need 1,100 of them, and eight
    moto calls per subscribe through the store would spend minutes on setup."""
    for start in range(0, len(connection_ids), 25):
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "topic": {"S": topic},
                        "connection_id": {"S": connection_id},
                        "expires_at": {"N": str(expires_at)},
                        "created_at": {"S": "2023-11-14T22:13:20+00:00"},
                    }
                }
            }
            for connection_id in connection_ids[start : start + 25]
        ]
        dynamodb.batch_write_item(RequestItems={SUBSCRIPTIONS: requests})


def test_subscribers_is_one_paginated_query_never_a_scan(recorder: RecordingClient, dynamodb: Any) -> None:
    store = _store(recorder, page_size=100)
    ids = [f"conn-{i:04d}" for i in range(1_100)]
    _write_subscriptions(dynamodb, "quote:AAPL", ids, expires_at=LATER)
    _subscribe(store, "gone", ["quote:AAPL"], expires_at=PAST)
    _subscribe(store, "other", ["quote:MSFT"], expires_at=LATER)
    recorder.calls.clear()

    found = store.subscribers("quote:AAPL", now=NOW)

    assert sorted(found) == ids
    assert set(recorder.operations()) == {"query"}
    assert len(recorder.calls) == 12  # 1,101 items in pages of 100: LastEvaluatedKey was followed
    first = recorder.calls[0][1]
    assert "IndexName" not in first  # the base table's partition key
    assert first["ProjectionExpression"] == "#connection_id"
    assert first["ExpressionAttributeNames"]["#connection_id"] == "connection_id"


def test_subscribers_over_default_pages(
    real_store: DynamoDBConnectionStore, recorder: RecordingClient, dynamodb: Any
) -> None:
    # No Limit: moto's own paging (if any) must be followed as well.
    _write_subscriptions(dynamodb, "channel:indices", [f"conn-{i:04d}" for i in range(1_100)], expires_at=LATER)
    recorder.calls.clear()

    assert len(real_store.subscribers("channel:indices", now=NOW)) == 1_100
    assert set(recorder.operations()) == {"query"}


def test_topics_of_is_one_consistent_read_of_the_connection_record(recorder: RecordingClient) -> None:
    store = _store(recorder)
    topics = [f"quote:S{i:02d}" for i in range(10)]
    _subscribe(store, "c1", topics, expires_at=LATER)
    recorder.calls.clear()

    assert store.topics_of("c1", now=NOW) == topics
    assert recorder.operations() == ["get_item"]
    assert recorder.calls[0][1]["ConsistentRead"] is True


def test_add_and_remove_return_the_whole_current_set(store: ConnectionStore) -> None:
    assert _subscribe(store, "c1", ["quote:MSFT"], expires_at=LATER) == ["quote:MSFT"]
    assert store.add_subscriptions("c1", ["quote:AAPL", "channel:indices"], expires_at=LATER) == [
        "channel:indices",
        "quote:AAPL",
        "quote:MSFT",
    ]
    assert store.remove_subscriptions("c1", ["quote:MSFT", "quote:NEVER"]) == ["channel:indices", "quote:AAPL"]
    assert store.remove_subscriptions("c1", ["quote:AAPL", "channel:indices"]) == []
    assert store.add_subscriptions("c1", [], expires_at=LATER) == []


def test_subscribing_an_unknown_connection_writes_nothing(real_store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    assert real_store.add_subscriptions("ghost", ["quote:AAPL"], expires_at=LATER) is None
    assert real_store.remove_subscriptions("ghost", ["quote:AAPL"]) is None
    assert dynamodb.scan(TableName=SUBSCRIPTIONS)["Items"] == []
    # The update's condition keeps it from creating a bare connection item.
    assert dynamodb.scan(TableName=CONNECTIONS)["Items"] == []


# --- remove_connection ----------------------------------------------------------------------------


def test_remove_connection_deletes_every_subscription_and_counts_them(recorder: RecordingClient, dynamodb: Any) -> None:
    store = _store(recorder, page_size=7)
    store.add_connection(_record("c1"))
    alive = [f"quote:A{i:02d}" for i in range(30)]
    _subscribe(store, "c1", alive, expires_at=LATER)
    _subscribe(store, "c1", ["quote:OLD1", "quote:OLD2"], expires_at=PAST)  # expired: removed too
    _subscribe(store, "c2", ["quote:A00"], expires_at=LATER)
    recorder.calls.clear()

    removed = store.remove_connection("c1")

    assert removed == 32
    assert "scan" not in recorder.operations()
    assert store.get_connection("c1", now=PAST - 1) is None
    remaining = dynamodb.scan(TableName=SUBSCRIPTIONS)["Items"]
    assert [(i["topic"]["S"], i["connection_id"]["S"]) for i in remaining] == [("quote:A00", "c2")]


def test_remove_connection_is_idempotent(store: ConnectionStore) -> None:
    store.add_connection(_record("c1"))
    _subscribe(store, "c1", ["quote:AAPL"], expires_at=LATER)

    assert store.remove_connection("c1") == 1
    assert store.remove_connection("c1") == 0
    assert store.remove_connection("never-seen") == 0


# --- stats ----------------------------------------------------------------------------------------


def test_stats_counts_connections_users_and_top_topics_from_the_registry(
    recorder: RecordingClient, dynamodb: Any
) -> None:
    store = _store(recorder, page_size=2)
    store.add_connection(_record("c1", "u1", shard=0))
    store.add_connection(_record("c2", "u1", shard=1))
    store.add_connection(_record("c3", "u2", shard=3))
    store.add_connection(_record("c4", "u3", expires_at=PAST, shard=3))  # no $disconnect came
    _subscribe(store, "c1", ["quote:AAPL", "quote:MSFT", "channel:indices"], expires_at=LATER)
    _subscribe(store, "c2", ["quote:AAPL", "quote:MSFT", "channel:sectors"], expires_at=LATER)
    _subscribe(store, "c3", ["quote:AAPL", "channel:indices"], expires_at=LATER)
    _subscribe(store, "c4", ["quote:TSLA"], expires_at=PAST)
    recorder.calls.clear()

    with dynamodb_operations(dynamodb) as operations:
        stats = store.stats(top=3)

    # The expired connection counts until the cleanup removes it.
    assert (stats.open_connections, stats.distinct_users) == (4, 3)
    # Ties (indices and MSFT both 2) by topic name, summed over the shards.
    assert list(stats.subscribers_by_topic.items()) == [("quote:AAPL", 3), ("channel:indices", 2), ("quote:MSFT", 2)]
    assert "Scan" not in operations
    assert set(operations) == {"Query", "BatchGetItem"}
    assert operations.count("Query") >= SHARDS  # one per shard (more when paged)
    assert operations.count("BatchGetItem") == 1  # every counter in one call
    assert store.stats(top=0).subscribers_by_topic == {}

    store.delete_expired(now=NOW)

    stats = store.stats(top=10)
    assert (stats.open_connections, stats.distinct_users) == (3, 2)
    assert "quote:TSLA" not in stats.subscribers_by_topic


def test_stats_of_empty_tables(store: ConnectionStore) -> None:
    stats = store.stats(top=10)
    assert (stats.open_connections, stats.distinct_users, dict(stats.subscribers_by_topic)) == (0, 0, {})


# --- expressions and errors -----------------------------------------------------------------------


def test_values_with_quotes_and_colons_are_never_spliced(
    real_store: DynamoDBConnectionStore, recorder: RecordingClient
) -> None:
    topics = ["quote:BRK-B", "channel:indices", "quote:X' OR '1'='1", 'channel:"a":b', "#expires_at :now"]
    real_store.add_connection(_record("c:1'\"", "user:'1\""))
    _subscribe(real_store, "c:1'\"", topics, expires_at=LATER)

    assert sorted(real_store.topics_of("c:1'\"", now=NOW)) == sorted(topics)
    for topic in topics:
        assert real_store.subscribers(topic, now=NOW) == ["c:1'\""]
    assert [r.connection_id for r in real_store.connections_of_user("user:'1\"", now=NOW)] == ["c:1'\""]
    assert real_store.stats(top=10).subscribers_by_topic == dict.fromkeys(sorted(topics), 1)
    assert real_store.remove_connection("c:1'\"") == len(topics)

    expressions = [value for _, params in recorder.calls for key, value in params.items() if key.endswith("Expression")]
    assert expressions
    for expression in expressions:
        # Only placeholders, commas and operators: no name or value written into the text.
        assert _EXPRESSION_TOKEN.fullmatch(expression), expression


def test_unreachable_endpoint_raises_store_unavailable(clean_env: pytest.MonkeyPatch) -> None:
    client = unreachable_client()
    store = DynamoDBConnectionStore(client, CONNECTIONS, SUBSCRIPTIONS, REGISTRY)

    for call in (
        lambda: store.get_connection("c1", now=NOW),
        lambda: store.subscribers("quote:AAPL", now=NOW),
        lambda: _subscribe(store, "c1", ["quote:AAPL"], expires_at=LATER),
        lambda: store.remove_connection("c1"),
        lambda: store.stats(top=5),
    ):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.status_code == 503
        assert caught.value.code == "store_unavailable"
        assert caught.value.__cause__ is not None


def test_a_client_error_raises_store_unavailable_without_item_contents(dynamodb: Any) -> None:
    store = DynamoDBConnectionStore(dynamodb, "no-such-table", "no-such-subscriptions", "no-such-registry")

    with pytest.raises(StoreUnavailable) as caught:
        store.add_connection(_record("secret-connection", "secret-user"))

    assert "ResourceNotFoundException" in caught.value.message
    assert "secret" not in caught.value.message
    assert type(caught.value.__cause__).__name__ == "ResourceNotFoundException"


# --- the registry -------------------------------------------------------------------------------


def _registry_items(dynamodb: Any) -> dict[tuple[str, str], int]:
    """Every count the registry table holds (pk, sk) → count, read directly."""
    items = dynamodb.scan(TableName=REGISTRY)["Items"]
    return {(i["pk"]["S"], i["sk"]["S"]): int(i["count"]["N"]) for i in items if "count" in i}


def _topic_counts(dynamodb: Any) -> dict[tuple[int, str], int]:
    """(shard, topic) → count of the registry's topic items, zeros left out."""
    return {
        (int(pk.removeprefix("REG#")), sk): count
        for (pk, sk), count in _registry_items(dynamodb).items()
        if pk.startswith("REG#") and count
    }


def _slots(dynamodb: Any, user_id: str) -> set[str]:
    item = dynamodb.get_item(TableName=REGISTRY, Key={"pk": {"S": f"USER#{user_id}"}, "sk": {"S": "slots"}})
    return set(item.get("Item", {}).get("ids", {}).get("SS", []))


def test_subscribed_topics_come_from_the_registry_in_one_query_per_shard(
    recorder: RecordingClient, dynamodb: Any
) -> None:
    store = _store(recorder, page_size=2)
    store.add_connection(_record("c1", shard=0))
    store.add_connection(_record("c2", shard=2))
    _subscribe(store, "c1", ["quote:MSFT", "quote:AAPL", "channel:indices"], expires_at=LATER)
    _subscribe(store, "c2", ["quote:AAPL", "quote:MSFT", "quote:TSLA"], expires_at=LATER)
    store.remove_subscriptions("c2", ["quote:TSLA"])  # its count drops to zero: no longer listed
    recorder.calls.clear()

    with dynamodb_operations(dynamodb) as operations:
        topics = store.subscribed_topics()
        registry = store.topic_registry()

    assert topics == ["channel:indices", "quote:AAPL", "quote:MSFT"]
    assert set(operations) == {"Query"}
    assert all(params["TableName"] == REGISTRY for _, params in recorder.calls)
    assert dict(registry.counts) == {
        0: {"channel:indices": 1, "quote:AAPL": 1, "quote:MSFT": 1},
        2: {"quote:AAPL": 1, "quote:MSFT": 1},
    }
    assert registry.totals() == {"channel:indices": 1, "quote:AAPL": 2, "quote:MSFT": 2}
    assert registry.shards_for(["quote:AAPL"]) == [0, 2]
    assert registry.shards_for(["channel:indices", "quote:NONE"]) == [0]
    assert registry.shards_for(["quote:TSLA"]) == []


def test_subscribed_topics_of_an_empty_registry(store: ConnectionStore) -> None:
    assert store.subscribed_topics() == []
    assert store.topic_registry().counts == {}


def test_registry_counts_follow_subscribe_unsubscribe_and_removal(
    real_store: DynamoDBConnectionStore, dynamodb: Any
) -> None:
    real_store.add_connection(_record("a", "u1", shard=1))
    real_store.add_connection(_record("b", "u2", shard=1))
    real_store.add_connection(_record("c", "u3", shard=2))

    real_store.add_subscriptions("a", ["quote:AAPL", "quote:MSFT"], expires_at=LATER)
    real_store.add_subscriptions("b", ["quote:AAPL"], expires_at=LATER)
    real_store.add_subscriptions("c", ["quote:AAPL"], expires_at=LATER)
    # Subscribing again to what is held (or a retried request) counts nothing.
    real_store.add_subscriptions("a", ["quote:AAPL", "quote:AAPL"], expires_at=LATER)
    real_store.add_subscriptions("b", ["quote:AAPL"], expires_at=LATER)

    assert _topic_counts(dynamodb) == {(1, "quote:AAPL"): 2, (1, "quote:MSFT"): 1, (2, "quote:AAPL"): 1}

    # Unsubscribing what is not held (or twice) counts nothing down.
    real_store.remove_subscriptions("a", ["quote:MSFT", "quote:NEVER"])
    real_store.remove_subscriptions("a", ["quote:MSFT"])
    assert _topic_counts(dynamodb) == {(1, "quote:AAPL"): 2, (2, "quote:AAPL"): 1}

    # A removal ($disconnect, a 410, the cleanup) counts its topics down once, however often it runs.
    assert real_store.remove_connection("a") == 1
    assert real_store.remove_connection("a") == 0
    assert _topic_counts(dynamodb) == {(1, "quote:AAPL"): 1, (2, "quote:AAPL"): 1}
    items = _registry_items(dynamodb)
    assert items[("COUNT#1", "connections")] == 1
    assert items[("COUNT#2", "connections")] == 1
    assert sum(count for (pk, sk), count in items.items() if sk == "users") == 2
    assert _slots(dynamodb, "u1") == set()


def test_a_count_never_goes_below_zero(real_store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    real_store.add_connection(_record("a", shard=0))
    real_store.add_subscriptions("a", ["quote:AAPL", "quote:MSFT"], expires_at=LATER)
    # GIVEN a drifted registry: AAPL's count lost (zero), MSFT's item gone altogether.
    dynamodb.put_item(TableName=REGISTRY, Item={"pk": {"S": "REG#0"}, "sk": {"S": "quote:AAPL"}, "count": {"N": "0"}})
    dynamodb.delete_item(TableName=REGISTRY, Key={"pk": {"S": "REG#0"}, "sk": {"S": "quote:MSFT"}})

    real_store.remove_subscriptions("a", ["quote:AAPL"])
    real_store.remove_connection("a")

    items = _registry_items(dynamodb)
    assert items[("REG#0", "quote:AAPL")] == 0
    assert ("REG#0", "quote:MSFT") not in items  # the refused decrement did not create an item
    assert all(count >= 0 for count in items.values())


def test_registry_items_are_partitioned_per_shard(real_store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    for shard in range(SHARDS):
        real_store.add_connection(_record(f"c{shard}", f"u{shard}", shard=shard))
        real_store.add_subscriptions(f"c{shard}", ["quote:AAPL"], expires_at=LATER)

    keys = set(_registry_items(dynamodb))

    # Four partitions take the four subscribe writes: no single hot key for every subscribe.
    assert {pk for pk, sk in keys if sk == "quote:AAPL"} == {f"REG#{shard}" for shard in range(SHARDS)}


def test_a_disconnect_racing_a_410_cleanup_counts_down_once(dynamodb: Any) -> None:
    store = _store(SerializedClient(dynamodb))
    store.add_connection(_record("a", "u1", shard=1))
    store.add_connection(_record("b", "u1", shard=1))
    store.add_subscriptions("a", ["quote:AAPL"], expires_at=LATER)
    store.add_subscriptions("b", ["quote:AAPL"], expires_at=LATER)
    start = threading.Barrier(6)

    def remove() -> int:
        start.wait()
        return store.remove_connection("a")

    with ThreadPoolExecutor(max_workers=6) as pool:
        removed = list(pool.map(lambda _: remove(), range(6)))

    assert sorted(removed) == [0, 0, 0, 0, 0, 1]
    assert _topic_counts(dynamodb) == {(1, "quote:AAPL"): 1}
    assert _registry_items(dynamodb)[("COUNT#1", "connections")] == 1
    assert _slots(dynamodb, "u1") == {"b"}


# --- shards ---------------------------------------------------------------------------------------


def test_connections_in_shard_reads_the_shard_index_in_pages_with_topic_sets(recorder: RecordingClient) -> None:
    store = _store(recorder, page_size=5)
    expected: dict[int, dict[str, frozenset[str]]] = {shard: {} for shard in range(SHARDS)}
    for i in range(40):
        connection_id = f"conn-{i:02d}"
        shard = shard_for(connection_id, SHARDS)
        topics = frozenset({f"quote:S{i % 7}", f"quote:S{i % 5}", "channel:indices"} if i % 3 else set())
        store.add_connection(_record(connection_id, f"user-{i % 9}", shard=shard))
        if topics:
            store.add_subscriptions(connection_id, sorted(topics), expires_at=LATER)
        expected[shard][connection_id] = topics
    store.add_connection(_record("expired", shard=0, expires_at=PAST))
    recorder.calls.clear()

    for shard in range(SHARDS):
        found = list(store.connections_in_shard(shard, now=NOW))
        assert {r.connection_id: r.topics for r in found} == expected[shard]
        assert all(r.shard == shard for r in found)
        assert {r.user_id for r in found} == {f"user-{int(cid[5:]) % 9}" for cid in expected[shard]}

    assert set(recorder.operations()) == {"query"}
    assert {params["IndexName"] for _, params in recorder.calls} == {"by-shard"}
    # Pages of 5 per shard (LastEvaluatedKey followed): ~40/5 + a page per shard, not a Query per topic.
    assert SHARDS < len(recorder.calls) <= 40 // 5 + 2 * SHARDS
    assert list(store.connections_in_shard(SHARDS + 1, now=NOW)) == []


def test_shard_for_is_stable_and_spreads_connections() -> None:
    assert shard_for("L0SM9cOFvHcCIhw=", 16) == shard_for("L0SM9cOFvHcCIhw=", 16)
    # A fixed value: the same in every process (Python's hash() is salted per process).
    assert shard_for("L0SM9cOFvHcCIhw=", 1) == 0
    counts = Counter(shard_for(f"conn-{i}", 16) for i in range(16_000))
    assert set(counts) == set(range(16))
    assert min(counts.values()) > 800  # ~1,000 each
    with pytest.raises(ValueError, match="at least 1"):
        shard_for("x", 0)


# --- the per-user cap -----------------------------------------------------------------------------


def test_the_cap_holds_under_simultaneous_connects_of_one_user(dynamodb: Any) -> None:
    store = _store(SerializedClient(dynamodb))
    store.add_connection(_record("other", "u2", shard=0), max_per_user=3)
    attempts = 12
    start = threading.Barrier(attempts)

    def connect(i: int) -> bool:
        start.wait()  # all at once: every one of them may see the user below the cap
        return store.add_connection(_record(f"c{i:02d}", "u1", shard=i % SHARDS), max_per_user=3)

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        accepted = list(pool.map(connect, range(attempts)))

    assert accepted.count(True) == 3
    winners = {f"c{i:02d}" for i, ok in enumerate(accepted) if ok}
    assert {r.connection_id for r in store.connections_of_user("u1", now=NOW)} == winners
    assert _slots(dynamodb, "u1") == winners
    # The refused ones left no item behind, and only the accepted ones count.
    assert store.stats(top=0).open_connections == 4
    assert store.stats(top=0).distinct_users == 2


def test_at_the_cap_expired_and_vanished_connections_give_their_slots_back(
    real_store: DynamoDBConnectionStore, dynamodb: Any
) -> None:
    assert real_store.add_connection(_record("live", "u1", shard=0), max_per_user=3)
    assert real_store.add_connection(_record("expired", "u1", shard=1, expires_at=PAST), max_per_user=3)
    assert real_store.add_connection(_record("vanished", "u1", shard=2), max_per_user=3)
    real_store.add_subscriptions("expired", ["quote:AAPL"], expires_at=PAST)
    # GIVEN a removal that died after deleting the item, before releasing the slot.
    dynamodb.delete_item(TableName=CONNECTIONS, Key={"connection_id": {"S": "vanished"}})

    assert real_store.add_connection(_record("new", "u1", shard=3), max_per_user=3)

    assert _slots(dynamodb, "u1") == {"live", "new"}
    assert real_store.get_connection("expired", now=PAST - 1) is None  # removed, with its counts
    assert _topic_counts(dynamodb) == {}
    # A live connection's slot is never given back: at the cap again, the next is refused.
    assert real_store.add_connection(_record("third", "u1", shard=0), max_per_user=3)
    assert not real_store.add_connection(_record("fourth", "u1", shard=0), max_per_user=3)
    assert real_store.get_connection("fourth", now=NOW) is None


def test_a_retried_connect_takes_one_slot_and_counts_once(real_store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    record = _record("c1", "u1", shard=2)
    assert real_store.add_connection(record, max_per_user=1)
    assert real_store.add_connection(record, max_per_user=1)  # the same connection again: not refused by itself

    assert _slots(dynamodb, "u1") == {"c1"}
    stats = real_store.stats(top=0)
    assert (stats.open_connections, stats.distinct_users) == (1, 1)
    assert not real_store.add_connection(_record("c2", "u1", shard=2), max_per_user=1)


# --- repair ---------------------------------------------------------------------------------------


def test_repair_recounts_drifted_counts_from_each_shards_connections(recorder: RecordingClient, dynamodb: Any) -> None:
    store = _store(recorder, page_size=3)
    store.add_connection(_record("a", "u1", shard=0))
    store.add_connection(_record("b", "u2", shard=0))
    store.add_connection(_record("c", "u2", shard=3))
    store.add_subscriptions("a", ["quote:AAPL", "quote:MSFT"], expires_at=LATER)
    store.add_subscriptions("b", ["quote:AAPL"], expires_at=LATER)
    store.add_subscriptions("c", ["channel:indices"], expires_at=LATER)
    truth = _registry_items(dynamodb)
    # GIVEN drift: a count too high, one missing, one for a topic nobody holds, a leftover zero,
    # and wrong totals.
    for pk, sk, count in (
        ("REG#0", "quote:AAPL", 7),
        ("REG#1", "quote:GONE", 4),
        ("REG#2", "quote:ZERO", 0),
        ("COUNT#0", "connections", 9),
        ("COUNT#3", "connections", 0),
    ):
        dynamodb.put_item(TableName=REGISTRY, Item={"pk": {"S": pk}, "sk": {"S": sk}, "count": {"N": str(count)}})
    dynamodb.delete_item(TableName=REGISTRY, Key={"pk": {"S": "REG#0"}, "sk": {"S": "quote:MSFT"}})
    users_key = next(key for key in truth if key[1] == "users" and truth[key] > 0)
    dynamodb.delete_item(TableName=REGISTRY, Key={"pk": {"S": users_key[0]}, "sk": {"S": "users"}})
    recorder.calls.clear()

    with dynamodb_operations(dynamodb) as operations:
        repair = store.repair_registry(now=NOW)

    assert _registry_items(dynamodb) == truth
    assert repair.shards == SHARDS
    assert repair.topic_counts_fixed == 3  # AAPL, MSFT, GONE (the zero item is only tidied)
    assert repair.counters_fixed == 3  # two connection totals and a users total
    assert repair.skipped == 0
    assert "Scan" not in operations  # per-shard Queries, not a Scan of the table
    queried = {params.get("IndexName", params["TableName"]) for name, params in recorder.calls if name == "query"}
    assert queried == {"by-shard", REGISTRY}

    again = store.repair_registry(now=NOW)
    assert (again.topic_counts_fixed, again.counters_fixed, again.skipped) == (0, 0, 0)


def test_repair_leaves_a_count_that_moved_while_it_recounted(dynamodb: Any) -> None:
    plain = _store(dynamodb)
    plain.add_connection(_record("a", "u1", shard=0))
    plain.add_subscriptions("a", ["quote:AAPL"], expires_at=LATER)
    dynamodb.put_item(TableName=REGISTRY, Item={"pk": {"S": "REG#0"}, "sk": {"S": "quote:AAPL"}, "count": {"N": "5"}})

    class SubscribeDuringRecount(RecordingClient):
        """A subscribe lands between the repair's registry read and its write."""

        def __getattr__(self, name: str) -> Any:
            call = super().__getattr__(name)

            def hooked(**params: Any) -> Any:
                result = call(**params)
                if params.get("IndexName") == "by-shard" and params["ExpressionAttributeValues"][":shard"] == {
                    "N": "0"
                }:
                    plain.add_connection(_record("b", "u2", shard=0))
                    plain.add_subscriptions("b", ["quote:AAPL"], expires_at=LATER)
                return result

            return hooked

    repair = _store(SubscribeDuringRecount(dynamodb)).repair_registry(now=NOW)

    assert repair.skipped >= 1
    assert _topic_counts(dynamodb)[(0, "quote:AAPL")] == 6  # not overwritten with a stale recount
    plain.repair_registry(now=NOW)
    assert _topic_counts(dynamodb)[(0, "quote:AAPL")] == 2


# --- delete_expired -------------------------------------------------------------------------------


def _put_subscription(dynamodb: Any, topic: str, connection_id: str, *, expires_at: int) -> None:
    """A subscription item written directly, as one left behind by a process that died between writes."""
    dynamodb.put_item(
        TableName=SUBSCRIPTIONS,
        Item={
            "topic": {"S": topic},
            "connection_id": {"S": connection_id},
            "expires_at": {"N": str(expires_at)},
            "created_at": {"S": "2023-11-14T22:13:20+00:00"},
        },
    )


def _subscription_keys(dynamodb: Any) -> list[tuple[str, str]]:
    items = dynamodb.scan(TableName=SUBSCRIPTIONS)["Items"]
    return sorted((item["topic"]["S"], item["connection_id"]["S"]) for item in items)


def _connection_ids(dynamodb: Any) -> list[str]:
    return sorted(item["connection_id"]["S"] for item in dynamodb.scan(TableName=CONNECTIONS)["Items"])


def _untidy_tables(store: DynamoDBConnectionStore, dynamodb: Any) -> tuple[list[tuple[str, str]], int]:
    """Live, expired and orphaned connections and subscriptions; returns the subscription keys that
    must survive and how many subscription items must go."""
    # Live: kept.
    _subscribe(store, "live1", ["quote:AAPL", "channel:indices"], expires_at=LATER)
    _subscribe(store, "live2", ["quote:AAPL"], expires_at=LATER)
    # Expired connections with their subscriptions (2 + 1 + 0 items): removed via remove_connection.
    _subscribe(store, "old1", ["quote:AAPL", "quote:OLD"], expires_at=PAST)
    store.add_connection(_record("old2", expires_at=PAST))
    store.add_subscriptions("old2", ["quote:MSFT"], expires_at=LATER)  # outlives its connection: goes too
    store.add_connection(_record("old3", expires_at=int(NOW)))  # expires_at <= now, no subscriptions
    # An expired subscription item of a live connection.
    _put_subscription(dynamodb, "quote:STALE", "live1", expires_at=PAST)
    # An expired orphan, and live orphans of connections that do not exist (over one BatchGetItem).
    _put_subscription(dynamodb, "quote:AAPL", "gone-expired", expires_at=PAST)
    for i in range(130):
        _put_subscription(dynamodb, f"quote:O{i % 3}", f"gone-{i:03d}", expires_at=LATER)
    kept = [("channel:indices", "live1"), ("quote:AAPL", "live1"), ("quote:AAPL", "live2")]
    return kept, 3 + 1 + 1 + 130


def test_delete_expired_removes_expired_and_orphaned_items_and_counts_them(
    recorder: RecordingClient, dynamodb: Any
) -> None:
    store = _store(recorder, page_size=40)
    kept, removed_subscriptions = _untidy_tables(store, dynamodb)
    recorder.calls.clear()

    assert store.delete_expired(now=NOW) == (3, removed_subscriptions)
    calls = list(recorder.calls)

    assert _connection_ids(dynamodb) == ["live1", "live2"]
    assert _subscription_keys(dynamodb) == kept
    assert store.topics_of("live1", now=NOW) == ["channel:indices", "quote:AAPL"]
    assert sorted(store.subscribers("quote:AAPL", now=NOW)) == ["live1", "live2"]
    # The orphan check is batched: consistent BatchGetItems of at most 100 distinct keys, no GetItem
    # per subscription (each expired connection is one DeleteItem that hands back its topic set).
    gets = [params["RequestItems"][CONNECTIONS] for name, params in calls if name == "batch_get_item"]
    assert len(gets) >= 2
    assert all(len(get["Keys"]) <= 100 and get["ConsistentRead"] is True for get in gets)
    assert all(len({k["connection_id"]["S"] for k in get["Keys"]}) == len(get["Keys"]) for get in gets)
    assert "get_item" not in [name for name, _ in calls]
    assert [p["TableName"] for name, p in calls if name == "delete_item"] == [CONNECTIONS] * 3
    writes = [params["RequestItems"][SUBSCRIPTIONS] for name, params in calls if name == "batch_write_item"]
    assert all(len(write) <= 25 for write in writes)
    scans = {params["TableName"] for name, params in calls if name == "scan"}
    assert scans == {CONNECTIONS, SUBSCRIPTIONS}


def test_delete_expired_is_idempotent(real_store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    kept, _ = _untidy_tables(real_store, dynamodb)
    real_store.delete_expired(now=NOW)

    assert real_store.delete_expired(now=NOW) == (0, 0)
    assert _subscription_keys(dynamodb) == kept
    assert _connection_ids(dynamodb) == ["live1", "live2"]


def test_delete_expired_of_tidy_tables_removes_nothing(real_store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    assert real_store.delete_expired(now=NOW) == (0, 0)
    _subscribe(real_store, "c1", ["quote:AAPL"], expires_at=LATER)

    assert real_store.delete_expired(now=NOW) == (0, 0)
    assert _subscription_keys(dynamodb) == [("quote:AAPL", "c1")]


class UnprocessedKeysClient(RecordingClient):
    """Like RecordingClient, but each throttled BatchGetItem answers only its first ``answered`` keys
    and hands the rest back as UnprocessedKeys."""

    def __init__(self, client: Any, *, unprocessed_key_rounds: int, answered: int = 1) -> None:
        super().__init__(client)
        self.unprocessed_key_rounds = unprocessed_key_rounds
        self.answered = answered

    def __getattr__(self, name: str) -> Any:
        call = super().__getattr__(name)
        if name != "batch_get_item":
            return call

        def throttled(**params: Any) -> Any:
            if self.unprocessed_key_rounds <= 0:
                return call(**params)
            self.unprocessed_key_rounds -= 1
            (table, request), *_ = params["RequestItems"].items()
            keys = request["Keys"]
            answered, rest = keys[: self.answered], keys[self.answered :]
            if answered:
                response = call(RequestItems={table: {**request, "Keys": answered}})
            else:
                self.calls.append((name, params))
                response = {"Responses": {}}
            response["UnprocessedKeys"] = {table: {**request, "Keys": rest}} if rest else {}
            return response

        return throttled


def test_delete_expired_retries_unprocessed_keys_with_backoff(dynamodb: Any) -> None:
    plain = _store(dynamodb)
    _subscribe(plain, "live", ["quote:AAPL"], expires_at=LATER)
    for i in range(4):
        _put_subscription(dynamodb, "quote:AAPL", f"gone-{i}", expires_at=LATER)
    throttled = UnprocessedKeysClient(dynamodb, unprocessed_key_rounds=3)
    sleeps: list[float] = []
    store = _store(throttled, sleep=sleeps.append, backoff_base_seconds=0.05, backoff_cap_seconds=0.15)

    assert store.delete_expired(now=NOW) == (0, 4)

    assert throttled.operations().count("batch_get_item") == 4
    assert sleeps == [0.05, 0.1, 0.15]  # exponential, capped
    assert _subscription_keys(dynamodb) == [("quote:AAPL", "live")]


def test_delete_expired_deletes_nothing_it_could_not_check(dynamodb: Any) -> None:
    plain = _store(dynamodb)
    _subscribe(plain, "live", ["quote:AAPL"], expires_at=LATER)
    _put_subscription(dynamodb, "quote:AAPL", "gone", expires_at=LATER)
    throttled = UnprocessedKeysClient(dynamodb, unprocessed_key_rounds=100, answered=0)
    store = _store(throttled, batch_attempts=3)

    with pytest.raises(StoreUnavailable) as caught:
        store.delete_expired(now=NOW)

    assert caught.value.code == "store_unavailable"
    assert throttled.operations().count("batch_get_item") == 3
    assert "batch_write_item" not in throttled.operations()
    assert _subscription_keys(dynamodb) == [("quote:AAPL", "gone"), ("quote:AAPL", "live")]


def test_cleanup_expressions_are_placeholders_only(
    real_store: DynamoDBConnectionStore, recorder: RecordingClient
) -> None:
    _subscribe(real_store, "c:1'\"", ["quote:X' OR '1'='1", "#expires_at :now"], expires_at=PAST)
    _subscribe(real_store, "c:2'\"", ['channel:"a":b'], expires_at=LATER)
    recorder.calls.clear()

    assert real_store.subscribed_topics() == ["#expires_at :now", 'channel:"a":b', "quote:X' OR '1'='1"]
    assert real_store.delete_expired(now=NOW) == (1, 2)
    assert real_store.subscribed_topics() == ['channel:"a":b']
    real_store.repair_registry(now=NOW)

    token = _EXPRESSION_TOKEN
    expressions = [value for _, params in recorder.calls for key, value in params.items() if key.endswith("Expression")]
    expressions += [
        request["ProjectionExpression"]
        for name, params in recorder.calls
        if name == "batch_get_item"
        for request in params["RequestItems"].values()
    ]
    assert expressions
    for expression in expressions:
        assert token.fullmatch(expression), expression


def test_cleanup_on_an_unreachable_endpoint_raises_store_unavailable(clean_env: pytest.MonkeyPatch) -> None:
    client = unreachable_client()
    store = DynamoDBConnectionStore(client, CONNECTIONS, SUBSCRIPTIONS, REGISTRY)

    for call in (
        store.subscribed_topics,
        lambda: store.delete_expired(now=NOW),
        lambda: store.repair_registry(now=NOW),
        lambda: list(store.connections_in_shard(0, now=NOW)),
    ):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.__cause__ is not None
