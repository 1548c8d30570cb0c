"""The deploy rehearsal's transform (infra/rehearsal/transform.py) changes only what it documents, the
stack comparison catches a missing resource, and the rehearsal's provider path (the functions' transport
→ the local server → the replay data) answers what the replay answers."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import requests

from chalicelib.adapters.rehearsal_transport import RehearsalTransport
from infra.local.replay.transport import YahooReplayTransport
from infra.rehearsal.provider_server import ProviderServer
from infra.rehearsal.run import Report, compare_resources, resolve_conditions
from infra.rehearsal.transform import RehearsalSettings, drops, expected_resources, rehearsal_template

SETTINGS = RehearsalSettings(provider_url="http://127.0.0.1:9", gateway_url="http://127.0.0.1:4566")


def merged_template() -> dict[str, Any]:
    """The shapes of build/<stage>/package/sam.json that the transform touches, and some it must not."""
    environment = {
        "STAGE": "dev",
        "MARKET_DATA_SOURCE": "live",
        "REDIS_URL": {"Fn::Sub": "rediss://${Redis.PrimaryEndPoint.Address}:${Redis.PrimaryEndPoint.Port}/0"},
        "REDIS_AUTH_SECRET_ARN": {"Ref": "RedisAuthSecret"},
        "JWT_SECRET_ARN": {"Ref": "JwtSecret"},
        "CONNECTIONS_TABLE": {"Ref": "ConnectionsTable"},
        "WEBSOCKET_MANAGEMENT_ENDPOINT": {
            "Fn::Sub": "https://${WebsocketAPI}.execute-api.${AWS::Region}.amazonaws.com/dev"
        },
    }
    return {
        "Parameters": {
            "Stage": {"Type": "String", "AllowedValues": ["dev"]},
            "Waf": {"Type": "String", "Default": "off"},
        },
        "Conditions": {
            "IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]},
            "WafOn": {"Fn::Or": [{"Fn::Equals": [{"Ref": "Waf"}, "on"]}, {"Condition": "IsProd"}]},
        },
        "Resources": {
            "ConnectionsTable": {"Type": "AWS::DynamoDB::Table", "Properties": {}},
            "JwtSecret": {"Type": "AWS::SecretsManager::Secret", "Properties": {}},
            "RedisAuthSecret": {"Type": "AWS::SecretsManager::Secret", "Properties": {}},
            "Redis": {"Type": "AWS::ElastiCache::ReplicationGroup", "Properties": {}},
            "NatEip": {"Type": "AWS::EC2::EIP", "Properties": {}},
            "NatGateway": {
                "Type": "AWS::EC2::NatGateway",
                "Properties": {"AllocationId": {"Fn::GetAtt": ["NatEip", "AllocationId"]}},
            },
            "PrivateRoute": {"Type": "AWS::EC2::Route", "Properties": {"NatGatewayId": {"Ref": "NatGateway"}}},
            "PublicRoute": {"Type": "AWS::EC2::Route", "Properties": {"GatewayId": {"Ref": "InternetGateway"}}},
            "InternetGateway": {"Type": "AWS::EC2::InternetGateway", "Properties": {}},
            "RestWebAcl": {"Type": "AWS::WAFv2::WebACL", "Condition": "WafOn", "Properties": {}},
            "RestWebAclAssociation": {"Type": "AWS::WAFv2::WebACLAssociation", "Condition": "WafOn", "Properties": {}},
            "ErrorRateAlarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Metrics": [{"Id": "e1"}]}},
            "ThrottleAlarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"MetricName": "Throttles"}},
            "WebsocketAPI": {"Type": "AWS::ApiGatewayV2::Api", "Properties": {"ProtocolType": "WEBSOCKET"}},
            "WebsocketAPIDeployment": {
                "Type": "AWS::ApiGatewayV2::Deployment",
                "Properties": {"ApiId": {"Ref": "WebsocketAPI"}},
            },
            "WebsocketAPIStage": {
                "Type": "AWS::ApiGatewayV2::Stage",
                "DependsOn": ["WebsocketAPIDeployment"],
                "Properties": {
                    "ApiId": {"Ref": "WebsocketAPI"},
                    "DeploymentId": {"Ref": "WebsocketAPIDeployment"},
                    "StageName": "dev",
                },
            },
            "APIHandler": {
                "Type": "AWS::Serverless::Function",
                "Properties": {"CodeUri": "./deployment.zip", "Environment": {"Variables": environment}},
            },
        },
        "Outputs": {"NatAddress": {"Value": {"Ref": "NatEip"}}, "Table": {"Value": {"Ref": "ConnectionsTable"}}},
    }


def test_only_the_documented_resources_are_dropped_each_with_its_reason() -> None:
    template = merged_template()

    dropped = {d.logical_id: d.reason for d in drops(template)}
    rehearsed = rehearsal_template(template, SETTINGS)

    assert set(dropped) == {
        "NatEip", "NatGateway", "PrivateRoute", "RestWebAclAssociation", "ErrorRateAlarm", "WebsocketAPIDeployment"
    }  # fmt: skip
    assert all(dropped.values())
    assert set(rehearsed["Resources"]) == set(template["Resources"]) - set(dropped)
    assert "PublicRoute" in rehearsed["Resources"]
    assert "ThrottleAlarm" in rehearsed["Resources"]
    assert "NatAddress" not in rehearsed["Outputs"]
    assert template == merged_template()  # the input is left alone


def test_the_websocket_stage_auto_deploys_instead_of_the_dropped_deployment() -> None:
    stage = rehearsal_template(merged_template(), SETTINGS)["Resources"]["WebsocketAPIStage"]

    assert stage["Properties"]["AutoDeploy"] is True
    assert "DeploymentId" not in stage["Properties"]
    assert "DependsOn" not in stage


def test_function_environment_changes_only_as_documented() -> None:
    before = merged_template()["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]

    after = rehearsal_template(merged_template(), SETTINGS)["Resources"]["APIHandler"]["Properties"]["Environment"][
        "Variables"
    ]

    assert after["MARKET_DATA_SOURCE"] == "rehearsal"
    assert after["REHEARSAL_PROVIDER_URL"] == SETTINGS.provider_url
    assert after["REDIS_URL"] == {"Fn::Sub": "redis://${Redis.PrimaryEndPoint.Address}:${Redis.PrimaryEndPoint.Port}/0"}
    assert "REDIS_AUTH_SECRET_ARN" not in after
    assert after["WEBSOCKET_MANAGEMENT_ENDPOINT"] == {
        "Fn::Sub": "http://127.0.0.1:4566/_aws/execute-api/${WebsocketAPI}/dev"
    }
    # ministack's Ref of a secret is its name: the ARN comes from GetAtt Id (also the ARN on AWS).
    assert after["JWT_SECRET_ARN"] == {"Fn::GetAtt": ["JwtSecret", "Id"]}
    unchanged = set(before) - {
        "MARKET_DATA_SOURCE", "REDIS_URL", "REDIS_AUTH_SECRET_ARN", "WEBSOCKET_MANAGEMENT_ENDPOINT", "JWT_SECRET_ARN"
    }  # fmt: skip
    assert {k: after[k] for k in unchanged} == {k: before[k] for k in unchanged}
    assert after["STAGE"] == "dev"  # the deployed stage's settings checks run as deployed


def test_expected_resources_leave_out_drops_and_false_conditions() -> None:
    template = merged_template()

    conditions = resolve_conditions(template, {"Stage": "dev"})
    expected = expected_resources(template, conditions)

    assert conditions == {"IsProd": False, "WafOn": False}
    assert "RestWebAcl" not in expected
    assert "NatGateway" not in expected
    assert expected["APIHandler"] == "AWS::Serverless::Function"
    assert resolve_conditions(template, {"Stage": "dev", "Waf": "on"})["WafOn"] is True


class _FakeCloudFormation:
    def __init__(self, resources: dict[str, str], processed: dict[str, Any]) -> None:
        self._resources = resources
        self._processed = processed

    def describe_stack_resources(self, StackName: str) -> dict[str, Any]:  # noqa: N803, ARG002 - boto3's names
        return {
            "StackResources": [
                {"LogicalResourceId": k, "ResourceType": t, "ResourceStatus": "CREATE_COMPLETE"}
                for k, t in self._resources.items()
            ]
        }

    def get_template(self, StackName: str, TemplateStage: str) -> dict[str, Any]:  # noqa: N803, ARG002
        return {"TemplateBody": self._processed}


def test_the_comparison_fails_when_the_emulator_silently_lacks_a_resource() -> None:
    template = merged_template()
    expected = {
        k: ("AWS::Lambda::Function" if t == "AWS::Serverless::Function" else t)
        for k, t in expected_resources(template, resolve_conditions(template, {})).items()
    }
    processed = {"Resources": {**copy.deepcopy(template["Resources"]), "APIHandlerRole": {"Type": "AWS::IAM::Role"}}}
    processed["Resources"]["APIHandler"]["Type"] = "AWS::Lambda::Function"
    for dropped in drops(template):
        del processed["Resources"][dropped.logical_id]
    complete = {**expected, "APIHandlerRole": "AWS::IAM::Role"}

    good, bad = Report(), Report()
    compare_resources(good, _FakeCloudFormation(complete, processed), "s", template, {})
    without_role = {k: v for k, v in complete.items() if k != "APIHandlerRole"}
    compare_resources(bad, _FakeCloudFormation(without_role, processed), "s", template, {})

    assert good.ok, good.steps
    assert not bad.ok
    assert "APIHandlerRole" in bad.steps[0][2]


def test_a_provider_request_through_the_rehearsal_transport_gets_the_replay_answer() -> None:
    """The functions' transport rewrites the vendor URL to the local server, which answers it from the
    replay data: the same bytes the replay transport gives for the same request."""
    replay = YahooReplayTransport(clock=None)
    url = "https://query1.finance.yahoo.com/v7/finance/quote?symbols=AAPL,MSFT"
    with ProviderServer(YahooReplayTransport(clock=None)) as server:
        session = requests.Session()
        session.mount("https://", RehearsalTransport(server.url, 5.0))
        answer = session.get(url, timeout=5)
        unknown = session.get("https://example.com/nothing", timeout=5)
    direct = replay.send(requests.Request("GET", url).prepare())

    assert answer.status_code == 200 == direct.status_code
    assert answer.json() == direct.json()
    assert answer.url == url  # the caller sees the URL it asked for
    assert {item["symbol"] for item in answer.json()["quoteResponse"]["result"]} == {"AAPL", "MSFT"}
    assert unknown.status_code == 404


def test_the_resource_list_gate_names_what_appeared_and_what_disappeared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra import template_gates

    monkeypatch.setattr(template_gates, "LINT_BUILD", tmp_path / "build")
    monkeypatch.setattr(template_gates, "EXPECTED_DIR", tmp_path)
    template = merged_template()
    template_gates.template_path("dev").parent.mkdir(parents=True)
    template_gates.template_path("dev").write_text(json.dumps(template))
    template_gates.expected_path("dev").write_text("\n".join(template_gates.resource_lines(template)) + "\n")
    assert template_gates.compare("dev") == []

    del template["Resources"]["ThrottleAlarm"]
    template["Resources"]["NewQueue"] = {"Type": "AWS::SQS::Queue"}
    template_gates.template_path("dev").write_text(json.dumps(template))

    assert template_gates.compare("dev") == [
        "+ NewQueue AWS::SQS::Queue (in the template, not in resources-dev.txt)",
        "- ThrottleAlarm AWS::CloudWatch::Alarm (in resources-dev.txt, not in the template)",
    ]


def test_the_rehearsal_source_builds_one_yahoo_provider_over_the_rehearsal_transport() -> None:
    """In the emulator the chain is the Yahoo adapter only (replay data), labelled replay, and its
    session sends every request to the rehearsal's provider server."""
    from chalicelib.container import Container
    from chalicelib.settings import load_settings

    settings = load_settings(
        {
            "STAGE": "dev",
            "JWT_SECRET": "r" * 40,
            "JWT_ISSUER": "https://idp.example.com/",
            "JWT_AUDIENCE": "market-data-api",
            "CORS_ALLOWED_ORIGINS": "https://dashboard.example.com",
            "MARKET_DATA_SOURCE": "rehearsal",
            "REHEARSAL_PROVIDER_URL": "http://127.0.0.1:8123",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
            "ALPHA_VANTAGE_API_KEY": "a-key-that-must-not-be-used",
        }
    )

    providers = Container(settings).providers

    assert [p.vendor for p in providers] == ["yahoo"]
    assert "source_label='replay'" in repr(providers[0])
    adapter = providers[0]._session.get_adapter("https://query1.finance.yahoo.com/v7/finance/quote")  # type: ignore[attr-defined]
    assert isinstance(adapter, RehearsalTransport)
