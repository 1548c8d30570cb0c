"""Tables created from infra/template.yaml: keys, indexes and TTL as the template says, names as settings say."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from chalicelib.settings import load_settings
from infra.local.tables import CloudFormationLoader, create_tables, load_template, table_definitions


@pytest.fixture
def dynamodb(clean_env: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


def _template_tables() -> dict[str, dict[str, Any]]:
    resources = load_template()["Resources"]
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }


def test_short_form_intrinsics_become_long_form() -> None:
    text = """
    a: !Sub "t-${Stage}"
    b: !Ref Stage
    c: !GetAtt Table.StreamArn
    d: !If [IsProd, !Join ["-", [x, !Select [0, !Split [",", "p,q"]]]], !Ref "AWS::NoValue"]
    e: !Equals [!FindInMap [M, K, V], "x"]
    f: !Condition IsProd
    g: !Not [!And [!Or [!Condition A, !Condition B], !Condition C]]
    h: !Base64 {"Fn::Sub": "x"}
    i: !Cidr [!ImportValue Vpc, 6, 5]
    j: !GetAZs ""
    """
    loaded = yaml.load(text, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    assert loaded == {
        "a": {"Fn::Sub": "t-${Stage}"},
        "b": {"Ref": "Stage"},
        "c": {"Fn::GetAtt": ["Table", "StreamArn"]},
        "d": {
            "Fn::If": [
                "IsProd",
                {"Fn::Join": ["-", ["x", {"Fn::Select": [0, {"Fn::Split": [",", "p,q"]}]}]]},
                {"Ref": "AWS::NoValue"},
            ]
        },
        "e": {"Fn::Equals": [{"Fn::FindInMap": ["M", "K", "V"]}, "x"]},
        "f": {"Condition": "IsProd"},
        "g": {"Fn::Not": [{"Fn::And": [{"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]}, {"Condition": "C"}]}]},
        "h": {"Fn::Base64": {"Fn::Sub": "x"}},
        "i": {"Fn::Cidr": [{"Fn::ImportValue": "Vpc"}, 6, 5]},
        "j": {"Fn::GetAZs": ""},
    }
    # The subclass must not teach plain SafeLoader CloudFormation's tags.
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load("a: !Ref Stage")


def test_table_names_resolve_the_stage() -> None:
    names = {d.logical_id: d.table_name for d in table_definitions("prod")}
    assert names == {
        "ConnectionsTable": "market-data-prod-connections",
        "SubscriptionsTable": "market-data-prod-subscriptions",
        "RegistryTable": "market-data-prod-registry",
        "JobRunsTable": "market-data-prod-job-runs",
    }


def test_unknown_stage_is_refused() -> None:
    with pytest.raises(ValueError, match="staging"):
        table_definitions("staging")


def test_settings_default_table_names_are_the_templates_local_names() -> None:
    # Drift guard: the service's defaults must name the tables the template creates for `local`.
    names = {d.logical_id: d.table_name for d in table_definitions("local")}
    settings = load_settings({})  # nothing set: the names the service uses by default
    assert settings.connections_table == names["ConnectionsTable"]
    assert settings.subscriptions_table == names["SubscriptionsTable"]
    assert settings.registry_table == names["RegistryTable"]
    assert settings.job_runs_table == names["JobRunsTable"]


def test_created_tables_match_the_template(dynamodb: Any) -> None:
    names = create_tables(dynamodb, "local")

    template = _template_tables()
    assert len(names) == len(template)
    for definition in table_definitions("local"):
        expected = template[definition.logical_id]
        table = dynamodb.describe_table(TableName=definition.table_name)["Table"]
        assert table["TableStatus"] == "ACTIVE"
        assert table["KeySchema"] == expected["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(expected["AttributeDefinitions"], key=str)
        assert table["BillingModeSummary"]["BillingMode"] == expected["BillingMode"]
        indexes = {index["IndexName"]: index for index in table.get("GlobalSecondaryIndexes", [])}
        assert set(indexes) == {index["IndexName"] for index in expected.get("GlobalSecondaryIndexes", [])}
        for index in expected.get("GlobalSecondaryIndexes", []):
            assert indexes[index["IndexName"]]["KeySchema"] == index["KeySchema"]
            assert indexes[index["IndexName"]]["Projection"] == index["Projection"]
        ttl = dynamodb.describe_time_to_live(TableName=definition.table_name)["TimeToLiveDescription"]
        assert ttl["TimeToLiveStatus"] == "ENABLED"
        assert ttl["AttributeName"] == expected["TimeToLiveSpecification"]["AttributeName"]


def test_create_tables_is_idempotent(dynamodb: Any) -> None:
    first = create_tables(dynamodb, "local")
    dynamodb.put_item(TableName=first[0], Item={"connection_id": {"S": "c1"}, "user_id": {"S": "u1"}})

    second = create_tables(dynamodb, "local")

    assert second == first
    assert sorted(dynamodb.list_tables()["TableNames"]) == sorted(first)
    # Existing tables are left alone, data included.
    assert dynamodb.scan(TableName=first[0])["Count"] == 1
