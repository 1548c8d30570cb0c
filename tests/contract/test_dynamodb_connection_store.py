"""DynamoDBConnectionStore against moto (in-process), on tables created from infra/template.yaml."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from chalicelib.adapters.dynamodb_connections import DynamoDBConnectionStore
from chalicelib.errors import StoreUnavailable
from chalicelib.ports import ConnectionRecord, ConnectionStore
from tests.fakes.dynamodb import LOCAL_TABLES, RecordingClient, table_fixtures, unreachable_client

_EXPRESSION_TOKEN = re.compile(r"(?:\s*(?:#[a-z_]+|:[a-z_]+|,|=|>|\(|\)|AND|ADD|DELETE|attribute_exists))+")

NOW = 1_700_000_000.5
LATER = 1_700_003_600  # an hour after NOW: alive
PAST = 1_699_999_000  # before NOW: expired
CONNECTIONS = LOCAL_TABLES["ConnectionsTable"]
SUBSCRIPTIONS = LOCAL_TABLES["SubscriptionsTable"]


dynamodb, recorder = table_fixtures(CONNECTIONS, SUBSCRIPTIONS)


def _store(client: Any, **kwargs: Any) -> DynamoDBConnectionStore:
    kwargs.setdefault("sleep", lambda _seconds: None)
    kwargs.setdefault("clock", lambda: NOW)
    return DynamoDBConnectionStore(client, CONNECTIONS, SUBSCRIPTIONS, **kwargs)


@pytest.fixture
def store(recorder: RecordingClient) -> DynamoDBConnectionStore:
    return _store(recorder)


def _record(connection_id: str, user_id: str = "u1", *, expires_at: int = LATER, **kwargs: Any) -> ConnectionRecord:
    return ConnectionRecord(
        connection_id=connection_id,
        user_id=user_id,
        connected_at=datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        expires_at=expires_at,
        **kwargs,
    )


def _subscribe(
    store: DynamoDBConnectionStore, connection_id: str, topics: list[str], *, expires_at: int
) -> list[str] | None:
    """Subscribe, first registering the connection (with the same expiry) if it is not there yet."""
    if store.get_connection(connection_id, now=PAST - 10_000) is None:
        store.add_connection(_record(connection_id, expires_at=expires_at))
    return store.add_subscriptions(connection_id, topics, expires_at=expires_at)


def test_it_implements_the_port(store: DynamoDBConnectionStore) -> None:
    port: ConnectionStore = store  # mypy checks the structure
    assert port is store


# --- connections ----------------------------------------------------------------------------------


def test_add_then_get_returns_the_record(store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    record = _record("c1", source_ip="203.0.113.9", user_agent='Mozilla/5.0 "quoted"')
    store.add_connection(record)

    assert store.get_connection("c1", now=NOW) == record
    item = dynamodb.get_item(TableName=CONNECTIONS, Key={"connection_id": {"S": "c1"}})["Item"]
    assert item["connected_at"] == {"S": "2023-11-14T22:13:20+00:00"}
    assert item["expires_at"] == {"N": str(LATER)}


def test_optional_fields_are_omitted_when_none(store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    store.add_connection(_record("c1"))

    item = dynamodb.get_item(TableName=CONNECTIONS, Key={"connection_id": {"S": "c1"}})["Item"]
    assert "source_ip" not in item
    assert "user_agent" not in item
    got = store.get_connection("c1", now=NOW)
    assert got is not None
    assert got.source_ip is None
    assert got.user_agent is None


def test_the_message_format_is_stored_and_an_item_without_one_reads_as_spec(
    store: DynamoDBConnectionStore, dynamodb: Any
) -> None:
    store.add_connection(_record("b1", message_format="batch"))
    got = store.get_connection("b1", now=NOW)
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
    old = store.get_connection("b1", now=NOW)
    assert old is not None
    assert old.message_format == "spec"


def test_connected_at_is_stored_in_utc(store: DynamoDBConnectionStore) -> None:
    paris = timezone(timedelta(hours=1))
    record = ConnectionRecord("c1", "u1", datetime(2023, 11, 14, 23, 13, 20, tzinfo=paris), LATER)
    store.add_connection(record)

    got = store.get_connection("c1", now=NOW)
    assert got is not None
    assert got.connected_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert got.connected_at.utcoffset() == timedelta(0)


def test_unknown_connection_is_none(store: DynamoDBConnectionStore) -> None:
    assert store.get_connection("nope", now=NOW) is None


def test_expired_connection_is_filtered_on_get(store: DynamoDBConnectionStore) -> None:
    store.add_connection(_record("old", expires_at=PAST))
    store.add_connection(_record("edge", expires_at=int(NOW)))  # expires_at <= now: expired

    assert store.get_connection("old", now=NOW) is None
    assert store.get_connection("edge", now=NOW) is None
    assert store.get_connection("old", now=PAST - 1) is not None


def test_connections_of_user_queries_the_index_and_filters_expired(
    store: DynamoDBConnectionStore, recorder: RecordingClient
) -> None:
    store.add_connection(_record("c1", "u1"))
    store.add_connection(_record("c2", "u1"))
    store.add_connection(_record("c3", "u1", expires_at=PAST))
    store.add_connection(_record("c4", "u2"))
    recorder.calls.clear()

    found = store.connections_of_user("u1", now=NOW)

    assert sorted(r.connection_id for r in found) == ["c1", "c2"]
    assert recorder.operations() == ["query"]
    assert recorder.calls[0][1]["IndexName"] == "by-user"
    assert store.connections_of_user("nobody", now=NOW) == []


# --- subscriptions --------------------------------------------------------------------------------


def test_subscriptions_add_remove_topics_of_and_subscribers(store: DynamoDBConnectionStore) -> None:
    _subscribe(store, "c1", ["quote:AAPL", "channel:indices"], expires_at=LATER)
    _subscribe(store, "c2", ["quote:AAPL"], expires_at=LATER)

    assert sorted(store.topics_of("c1", now=NOW)) == ["channel:indices", "quote:AAPL"]
    assert sorted(store.subscribers("quote:AAPL", now=NOW)) == ["c1", "c2"]
    assert store.subscribers("channel:indices", now=NOW) == ["c1"]

    store.remove_subscriptions("c1", ["quote:AAPL"])

    assert store.topics_of("c1", now=NOW) == ["channel:indices"]
    assert store.subscribers("quote:AAPL", now=NOW) == ["c2"]
    assert store.subscribers("quote:NONE", now=NOW) == []


def test_subscription_items_carry_expiry_and_creation_time(store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    _subscribe(store, "c1", ["quote:AAPL"], expires_at=LATER)

    item = dynamodb.get_item(TableName=SUBSCRIPTIONS, Key={"topic": {"S": "quote:AAPL"}, "connection_id": {"S": "c1"}})[
        "Item"
    ]
    assert item["expires_at"] == {"N": str(LATER)}
    assert datetime.fromisoformat(item["created_at"]["S"]) == datetime.fromtimestamp(NOW, tz=UTC)


def test_expired_subscriptions_are_filtered(store: DynamoDBConnectionStore) -> None:
    _subscribe(store, "alive", ["quote:AAPL"], expires_at=LATER)
    _subscribe(store, "dead", ["quote:AAPL", "quote:MSFT"], expires_at=PAST)

    assert store.subscribers("quote:AAPL", now=NOW) == ["alive"]
    assert store.subscribers("quote:MSFT", now=NOW) == []
    assert store.topics_of("dead", now=NOW) == []
    assert store.topics_of("alive", now=NOW) == ["quote:AAPL"]


def test_subscribing_twice_and_removing_unknown_are_harmless(store: DynamoDBConnectionStore) -> None:
    _subscribe(store, "c1", ["quote:AAPL", "quote:AAPL"], expires_at=LATER)  # duplicate in one call
    _subscribe(store, "c1", ["quote:AAPL"], expires_at=LATER)  # and again

    assert store.subscribers("quote:AAPL", now=NOW) == ["c1"]
    store.remove_subscriptions("c1", ["quote:NEVER"])
    store.remove_subscriptions("nobody", ["quote:AAPL"])
    _subscribe(store, "c1", [], expires_at=LATER)
    store.remove_subscriptions("c1", [])
    assert store.subscribers("quote:AAPL", now=NOW) == ["c1"]


def test_more_than_25_topics_are_written_in_chunks(store: DynamoDBConnectionStore, recorder: RecordingClient) -> None:
    topics = [f"quote:SYM{i:03d}" for i in range(60)]

    _subscribe(store, "c1", topics, expires_at=LATER)

    batches = [params for name, params in recorder.calls if name == "batch_write_item"]
    assert [len(b["RequestItems"][SUBSCRIPTIONS]) for b in batches] == [25, 25, 10]
    assert sorted(store.topics_of("c1", now=NOW)) == topics

    recorder.calls.clear()
    store.remove_subscriptions("c1", topics[:55])

    assert recorder.operations() == ["batch_write_item"] * 3 + ["update_item"]
    assert sorted(store.topics_of("c1", now=NOW)) == topics[55:]


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


def test_subscribers_is_one_paginated_query_never_a_scan(recorder: RecordingClient) -> None:
    store = _store(recorder, page_size=100)
    ids = [f"conn-{i:04d}" for i in range(1_100)]
    for connection_id in ids:
        _subscribe(store, connection_id, ["quote:AAPL"], expires_at=LATER)
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


def test_subscribers_over_default_pages(store: DynamoDBConnectionStore, recorder: RecordingClient) -> None:
    # No Limit: moto's own paging (if any) must be followed as well.
    for i in range(1_100):
        _subscribe(store, f"conn-{i:04d}", ["channel:indices"], expires_at=LATER)
    recorder.calls.clear()

    assert len(store.subscribers("channel:indices", now=NOW)) == 1_100
    assert set(recorder.operations()) == {"query"}


def test_topics_of_is_one_consistent_read_of_the_connection_record(recorder: RecordingClient) -> None:
    store = _store(recorder)
    topics = [f"quote:S{i:02d}" for i in range(10)]
    _subscribe(store, "c1", topics, expires_at=LATER)
    recorder.calls.clear()

    assert store.topics_of("c1", now=NOW) == topics
    assert recorder.operations() == ["get_item"]
    assert recorder.calls[0][1]["ConsistentRead"] is True


def test_add_and_remove_return_the_whole_current_set(store: DynamoDBConnectionStore) -> None:
    assert _subscribe(store, "c1", ["quote:MSFT"], expires_at=LATER) == ["quote:MSFT"]
    assert store.add_subscriptions("c1", ["quote:AAPL", "channel:indices"], expires_at=LATER) == [
        "channel:indices",
        "quote:AAPL",
        "quote:MSFT",
    ]
    assert store.remove_subscriptions("c1", ["quote:MSFT", "quote:NEVER"]) == ["channel:indices", "quote:AAPL"]
    assert store.remove_subscriptions("c1", ["quote:AAPL", "channel:indices"]) == []
    assert store.add_subscriptions("c1", [], expires_at=LATER) == []


def test_subscribing_an_unknown_connection_writes_nothing(store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    assert store.add_subscriptions("ghost", ["quote:AAPL"], expires_at=LATER) is None
    assert store.remove_subscriptions("ghost", ["quote:AAPL"]) is None
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


def test_remove_connection_is_idempotent(store: DynamoDBConnectionStore) -> None:
    store.add_connection(_record("c1"))
    _subscribe(store, "c1", ["quote:AAPL"], expires_at=LATER)

    assert store.remove_connection("c1") == 1
    assert store.remove_connection("c1") == 0
    assert store.remove_connection("never-seen") == 0


# --- stats ----------------------------------------------------------------------------------------


def test_stats_counts_live_connections_users_and_top_topics(recorder: RecordingClient) -> None:
    store = _store(recorder, page_size=2)
    store.add_connection(_record("c1", "u1"))
    store.add_connection(_record("c2", "u1"))
    store.add_connection(_record("c3", "u2"))
    store.add_connection(_record("c4", "u3", expires_at=PAST))
    _subscribe(store, "c1", ["quote:AAPL", "quote:MSFT", "channel:indices"], expires_at=LATER)
    _subscribe(store, "c2", ["quote:AAPL", "quote:MSFT", "channel:sectors"], expires_at=LATER)
    _subscribe(store, "c3", ["quote:AAPL", "channel:indices"], expires_at=LATER)
    _subscribe(store, "c4", ["quote:TSLA"], expires_at=PAST)
    _subscribe(store, "c5", ["quote:TSLA"], expires_at=PAST)
    recorder.calls.clear()

    stats = store.stats(now=NOW, top=3)

    assert stats.open_connections == 3
    assert stats.distinct_users == 2
    # Ties (indices and MSFT both 2) by topic name; TSLA only has expired subscribers.
    assert list(stats.subscribers_by_topic.items()) == [("quote:AAPL", 3), ("channel:indices", 2), ("quote:MSFT", 2)]
    assert set(recorder.operations()) == {"scan"}
    assert len(recorder.calls) > 2  # paginated
    assert store.stats(now=NOW, top=0).subscribers_by_topic == {}


def test_stats_of_empty_tables(store: DynamoDBConnectionStore) -> None:
    stats = store.stats(now=NOW, top=10)
    assert (stats.open_connections, stats.distinct_users, dict(stats.subscribers_by_topic)) == (0, 0, {})


# --- expressions and errors -----------------------------------------------------------------------


def test_values_with_quotes_and_colons_are_never_spliced(
    store: DynamoDBConnectionStore, recorder: RecordingClient
) -> None:
    topics = ["quote:BRK-B", "channel:indices", "quote:X' OR '1'='1", 'channel:"a":b', "#expires_at :now"]
    store.add_connection(_record("c:1'\"", "user:'1\""))
    _subscribe(store, "c:1'\"", topics, expires_at=LATER)

    assert sorted(store.topics_of("c:1'\"", now=NOW)) == sorted(topics)
    for topic in topics:
        assert store.subscribers(topic, now=NOW) == ["c:1'\""]
    assert [r.connection_id for r in store.connections_of_user("user:'1\"", now=NOW)] == ["c:1'\""]
    assert store.stats(now=NOW, top=10).subscribers_by_topic == dict.fromkeys(sorted(topics), 1)
    assert store.remove_connection("c:1'\"") == len(topics)

    expressions = [value for _, params in recorder.calls for key, value in params.items() if key.endswith("Expression")]
    assert expressions
    for expression in expressions:
        # Only placeholders, commas and operators: no name or value written into the text.
        assert _EXPRESSION_TOKEN.fullmatch(expression), expression


def test_unreachable_endpoint_raises_store_unavailable(clean_env: pytest.MonkeyPatch) -> None:
    client = unreachable_client()
    store = DynamoDBConnectionStore(client, CONNECTIONS, SUBSCRIPTIONS)

    for call in (
        lambda: store.get_connection("c1", now=NOW),
        lambda: store.subscribers("quote:AAPL", now=NOW),
        lambda: _subscribe(store, "c1", ["quote:AAPL"], expires_at=LATER),
        lambda: store.remove_connection("c1"),
        lambda: store.stats(now=NOW, top=5),
    ):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.status_code == 503
        assert caught.value.code == "store_unavailable"
        assert caught.value.__cause__ is not None


def test_a_client_error_raises_store_unavailable_without_item_contents(dynamodb: Any) -> None:
    store = DynamoDBConnectionStore(dynamodb, "no-such-table", "no-such-subscriptions")

    with pytest.raises(StoreUnavailable) as caught:
        store.add_connection(_record("secret-connection", "secret-user"))

    assert "ResourceNotFoundException" in caught.value.message
    assert "secret" not in caught.value.message
    assert type(caught.value.__cause__).__name__ == "ResourceNotFoundException"


# --- subscribed_topics ----------------------------------------------------------------------------


def test_subscribed_topics_lists_topics_with_live_subscribers_sorted_and_unique(recorder: RecordingClient) -> None:
    store = _store(recorder, page_size=2)
    _subscribe(store, "c1", ["quote:MSFT", "quote:AAPL", "channel:indices"], expires_at=LATER)
    _subscribe(store, "c2", ["quote:AAPL", "quote:MSFT"], expires_at=LATER)
    _subscribe(store, "c3", ["quote:TSLA", "quote:AAPL"], expires_at=PAST)  # TSLA: only expired subscribers
    _subscribe(store, "c4", ["channel:sectors"], expires_at=int(NOW))  # expires_at <= now: expired
    recorder.calls.clear()

    topics = store.subscribed_topics(now=NOW)

    assert topics == ["channel:indices", "quote:AAPL", "quote:MSFT"]
    assert set(recorder.operations()) == {"scan"}
    assert len(recorder.calls) > 1  # paginated
    first = recorder.calls[0][1]
    assert first["TableName"] == SUBSCRIPTIONS
    assert first["ProjectionExpression"] == "#topic"
    assert store.subscribed_topics(now=PAST - 1) == [
        "channel:indices",
        "channel:sectors",
        "quote:AAPL",
        "quote:MSFT",
        "quote:TSLA",
    ]


def test_subscribed_topics_of_an_empty_table(store: DynamoDBConnectionStore) -> None:
    assert store.subscribed_topics(now=NOW) == []


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
    # per subscription (the get_items are remove_connection's, one per expired connection).
    gets = [params["RequestItems"][CONNECTIONS] for name, params in calls if name == "batch_get_item"]
    assert len(gets) >= 2
    assert all(len(get["Keys"]) <= 100 and get["ConsistentRead"] is True for get in gets)
    assert all(len({k["connection_id"]["S"] for k in get["Keys"]}) == len(get["Keys"]) for get in gets)
    assert [name for name, _ in calls].count("get_item") == 3
    writes = [params["RequestItems"][SUBSCRIPTIONS] for name, params in calls if name == "batch_write_item"]
    assert all(len(write) <= 25 for write in writes)
    scans = {params["TableName"] for name, params in calls if name == "scan"}
    assert scans == {CONNECTIONS, SUBSCRIPTIONS}


def test_delete_expired_is_idempotent(store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    kept, _ = _untidy_tables(store, dynamodb)
    store.delete_expired(now=NOW)

    assert store.delete_expired(now=NOW) == (0, 0)
    assert _subscription_keys(dynamodb) == kept
    assert _connection_ids(dynamodb) == ["live1", "live2"]


def test_delete_expired_of_tidy_tables_removes_nothing(store: DynamoDBConnectionStore, dynamodb: Any) -> None:
    assert store.delete_expired(now=NOW) == (0, 0)
    _subscribe(store, "c1", ["quote:AAPL"], expires_at=LATER)

    assert store.delete_expired(now=NOW) == (0, 0)
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


def test_cleanup_expressions_are_placeholders_only(store: DynamoDBConnectionStore, recorder: RecordingClient) -> None:
    _subscribe(store, "c:1'\"", ["quote:X' OR '1'='1", "#expires_at :now"], expires_at=PAST)
    _subscribe(store, "c:2'\"", ['channel:"a":b'], expires_at=LATER)
    recorder.calls.clear()

    assert store.subscribed_topics(now=NOW) == ['channel:"a":b']
    assert store.delete_expired(now=NOW) == (1, 2)

    token = re.compile(r"(?:\s*(?:#[a-z_]+|:[a-z_]+|,|<=|>))+")
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
    store = DynamoDBConnectionStore(client, CONNECTIONS, SUBSCRIPTIONS)

    for call in (lambda: store.subscribed_topics(now=NOW), lambda: store.delete_expired(now=NOW)):
        with pytest.raises(StoreUnavailable) as caught:
            call()
        assert caught.value.__cause__ is not None
