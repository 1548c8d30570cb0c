"""The deployed stages' configuration against the infrastructure: every value taken from the stack names
an output the template really has, the rendering fills them in, and the IAM policy grants exactly what
the code calls, on the stack's resources (no `*` where an ARN will do)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from chalicelib.errors import ConfigurationError
from chalicelib.settings import load_settings
from infra import deploy
from infra.local.tables import load_template

REPO_ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = REPO_ROOT / "chalicelib" / "adapters"
# Statements whose resources AWS does not let you narrow (ENIs for VPC Lambdas, X-Ray segments).
UNNARROWABLE = ("VpcNetworkInterfacesAwsAllowsNoNarrowerResource", "TracingAwsAllowsNoNarrowerResource")
DYNAMODB_ACTIONS = {
    "get_item": "GetItem", "put_item": "PutItem", "update_item": "UpdateItem", "delete_item": "DeleteItem",
    "query": "Query", "scan": "Scan", "batch_write_item": "BatchWriteItem", "batch_get_item": "BatchGetItem",
}  # fmt: skip


def _fake_outputs() -> dict[str, str]:
    outputs = {name: f"value-of-{name}" for name in load_template()["Outputs"]}
    outputs["PrivateSubnetIds"] = "subnet-aaa,subnet-bbb"
    outputs["ConnectionsTableArn"] = "arn:aws:dynamodb:us-east-1:111122223333:table/market-data-dev-connections"
    return outputs


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_every_stack_value_the_stage_uses_is_an_output_of_the_template(stage: str) -> None:
    config, policy = deploy.stage_documents(stage)
    used = deploy.placeholders(config["stages"][stage]) | deploy.placeholders(policy)
    outputs = set(load_template()["Outputs"])
    assert used, "the stage takes its tables, network, Redis and secrets from the stack"
    assert used <= outputs, f"not outputs of infra/template.yaml: {sorted(used - outputs)}"


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_the_stage_runs_in_the_vpc_with_the_layer_and_its_own_policy(stage: str) -> None:
    config, _ = deploy.stage_documents(stage)
    settings = config["stages"][stage]
    assert settings["subnet_ids"] == ["from-stack:PrivateSubnetIds"]
    assert settings["security_group_ids"] == ["from-stack:LambdaSecurityGroupId"]
    assert settings["layers"] == ["from-stack:YFinanceLayerArn"]
    assert settings["autogen_policy"] is False
    env = settings["environment_variables"]
    # Secrets travel as ARNs only: no secret value in any environment.
    for name in ("JWT_SECRET", "ALPHA_VANTAGE_API_KEY", "FINANCIAL_MODELING_PREP_API_KEY", "TIINGO_API_KEY"):
        assert name not in env
    assert env["JWT_SECRET_ARN"] == "from-stack:JwtSecretArn"
    assert env["REDIS_URL"] == "from-stack:RedisUrl"


def test_rendering_fills_outputs_splits_lists_and_waits_for_the_websocket_api(tmp_path: Path) -> None:
    outputs = _fake_outputs()
    first = deploy.deploy_values("dev", "us-east-1", "111122223333", None, {})
    config, policy = deploy.render_project("dev", outputs, first, tmp_path / "first")
    stage = config["stages"]["dev"]
    assert stage["subnet_ids"] == ["subnet-aaa", "subnet-bbb"]
    assert stage["environment_variables"]["CONNECTIONS_TABLE"] == "value-of-ConnectionsTableName"
    assert "WEBSOCKET_MANAGEMENT_ENDPOINT" not in stage["environment_variables"]  # first pass: unknown yet
    assert (tmp_path / "first" / "app.py").exists()
    assert (tmp_path / "first" / ".chalice" / "policy-dev.json").exists()
    assert "from-stack:" not in json.dumps(config)
    assert "from-stack:" not in json.dumps(policy)

    second = deploy.deploy_values("dev", "us-east-1", "111122223333", "abc123", {})
    config, policy = deploy.render_project("dev", outputs, second, tmp_path / "second")
    endpoint = config["stages"]["dev"]["environment_variables"]["WEBSOCKET_MANAGEMENT_ENDPOINT"]
    assert endpoint == "https://abc123.execute-api.us-east-1.amazonaws.com/dev"
    manage = next(s for s in policy["Statement"] if s["Sid"] == "PushToWebSocketClients")
    assert manage["Resource"] == ["arn:aws:execute-api:us-east-1:111122223333:abc123/dev/POST/@connections/*"]
    tables = next(s for s in policy["Statement"] if s["Sid"] == "Tables")
    assert outputs["ConnectionsTableArn"] + "/index/*" in tables["Resource"]


def test_an_output_the_stack_lacks_is_an_error_not_a_broken_deploy() -> None:
    with pytest.raises(deploy.RenderError, match="NoSuchOutput"):
        deploy.render({"x": "from-stack:NoSuchOutput"}, {}, {})


def _dynamodb_actions_in_code() -> set[str]:
    called: set[str] = set()
    for source in ADAPTERS.glob("dynamodb_*.py"):
        text = source.read_text()
        for operation, action in DYNAMODB_ACTIONS.items():
            if re.search(rf'["\.]{operation}["\(]', text):
                called.add(action)
    return called


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_the_policy_grants_what_the_code_calls_on_the_stacks_resources_only(stage: str) -> None:
    _, policy = deploy.stage_documents(stage)
    statements: list[dict[str, Any]] = policy["Statement"]
    granted = {a.removeprefix("dynamodb:") for s in statements for a in s["Action"] if a.startswith("dynamodb:")}
    called = _dynamodb_actions_in_code()
    assert called, "the DynamoDB adapters call the API"
    assert called <= granted, f"called but not granted: {sorted(called - granted)}"
    assert granted <= called, f"granted but never called (least privilege): {sorted(granted - called)}"
    for statement in statements:
        assert statement["Effect"] == "Allow"
        if statement["Sid"] in UNNARROWABLE:
            continue
        for resource in statement["Resource"]:
            assert resource != "*", statement["Sid"]
            assert resource.startswith(("from-stack:", "arn:aws:")), resource
    tables = next(s for s in statements if s["Sid"] == "Tables")["Resource"]
    for table in ("ConnectionsTableArn", "SubscriptionsTableArn", "RegistryTableArn", "JobRunsTableArn"):
        assert f"from-stack:{table}" in tables
    secrets = next(s for s in statements if s["Sid"] == "Secrets")
    assert secrets["Action"] == ["secretsmanager:GetSecretValue"]


def test_the_dry_run_renders_the_stage_without_calling_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deploy, "BUILD_DIR", tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert deploy.deploy("dev", alarm_email="", jwks_url=None, dry_run=True) == 0
    printed = capsys.readouterr().out
    assert "would `chalice deploy --stage dev`" in printed
    assert "<subnet-a>" in printed


def test_the_fanout_worker_gets_retries_a_maximum_age_and_the_failure_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    """On moto's Lambda API: the event invoke config deploy sets is what Lambda then reports."""
    import boto3
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        iam = boto3.client("iam", region_name="us-east-1")
        role = iam.create_role(RoleName="worker", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        queue = boto3.client("sqs", region_name="us-east-1").create_queue(QueueName="market-data-dev-fanout-failures")
        queue_arn = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
            QueueUrl=queue["QueueUrl"], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        client = boto3.client("lambda", region_name="us-east-1")
        client.create_function(
            FunctionName="market-data-dev-fanout_worker", Runtime="python3.11", Role=role, Handler="app.fanout_worker",
            Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
        )  # fmt: skip
        deploy.configure_fanout_worker(client, "dev", queue_arn)
        config = client.get_function_event_invoke_config(FunctionName="market-data-dev-fanout_worker")
    assert config["MaximumRetryAttempts"] == 2
    assert config["MaximumEventAgeInSeconds"] == deploy.FANOUT_MAX_EVENT_AGE_SECONDS
    assert config["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_the_policy_lets_the_jobs_start_only_the_fanout_worker_and_reach_its_failure_queue(stage: str) -> None:
    _, policy = deploy.stage_documents(stage)
    statements = {s["Sid"]: s for s in policy["Statement"]}
    assert statements["StartFanoutWorkers"]["Action"] == ["lambda:InvokeFunction"]
    (function,) = statements["StartFanoutWorkers"]["Resource"]
    assert function.endswith(f":function:market-data-from-deploy:Stage-{deploy.FANOUT_WORKER}")
    assert statements["FanoutFailureDestination"]["Resource"] == ["from-stack:FanoutFailureQueueArn"]


def test_the_rest_api_id_for_the_stacks_gateway_responses_comes_from_chalices_deployed_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deploy, "CHALICE_DIR", tmp_path)
    assert deploy._rest_api_id("dev") is None  # never deployed: the stack gets RestApiId ""
    (tmp_path / "deployed").mkdir()
    record = {
        "resources": [
            {"name": "websocket_api", "resource_type": "websocket_api", "websocket_api_id": "wsapi12345"},
            {"name": "rest_api", "resource_type": "rest_api", "rest_api_id": "abcde12345"},
        ]
    }
    (tmp_path / "deployed" / "dev.json").write_text(json.dumps(record))
    rest_api = deploy._rest_api_id("dev")
    assert rest_api == "abcde12345"
    assert re.fullmatch(load_template()["Parameters"]["RestApiId"]["AllowedPattern"], rest_api)
    assert deploy._websocket_api_id("dev") == "wsapi12345"


@pytest.mark.parametrize("stage", ["local", *deploy.DEPLOYABLE_STAGES])
def test_every_stage_sets_a_valid_shard_count(stage: str) -> None:
    config = json.loads((REPO_ROOT / ".chalice" / "config.json").read_text())
    value = config["stages"][stage]["environment_variables"]["WS_SHARD_COUNT"]
    assert load_settings({"WS_SHARD_COUNT": value}).ws_shard_count == int(value)


def test_a_bad_shard_count_fails_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="WS_SHARD_COUNT"):
        load_settings({"WS_SHARD_COUNT": "0"})
