"""The deployed stages' configuration against the infrastructure: every value taken from the stack names
an output the template really has, the rendering fills them in, the IAM policies use the stack's
resources (no `*` where an ARN will do; what each function may call: test_function_policies.py), the
identity settings are checked before a deploy, and the API stages get their throttles and access logs."""

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
IDENTITY = {
    "JwtIssuer": "https://idp.example.com/",
    "JwtAudience": "market-data-api",
    "CorsAllowedOrigins": "https://dashboard.example.com",
}
JWKS = {"JwtJwksUrl": "https://idp.example.com/.well-known/jwks.json"}


def _fake_outputs() -> dict[str, str]:
    outputs = {name: f"value-of-{name}" for name in load_template()["Outputs"]}
    outputs["PrivateSubnetIds"] = "subnet-aaa,subnet-bbb"
    outputs["ConnectionsTableArn"] = "arn:aws:dynamodb:us-east-1:111122223333:table/market-data-dev-connections"
    return outputs


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_every_stack_value_the_stage_uses_is_an_output_of_the_template(stage: str) -> None:
    config, policies = deploy.stage_documents(stage)
    used = deploy.placeholders(config["stages"][stage]) | deploy.placeholders(list(policies.values()))
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
    assert env.get("JWT_SECRET_ARN") == ("from-stack:JwtSecretArn" if stage == "dev" else None)  # prod: RS256
    assert env["REDIS_URL"] == "from-stack:RedisUrl"
    # Identity comes from the deploy's arguments, checked before anything is deployed.
    assert env["JWT_ISSUER"] == "from-deploy:JwtIssuer"
    assert env["JWT_AUDIENCE"] == "from-deploy:JwtAudience"
    assert env["CORS_ALLOWED_ORIGINS"] == "from-deploy:CorsAllowedOrigins"


def test_rendering_fills_outputs_splits_lists_and_waits_for_the_websocket_api(tmp_path: Path) -> None:
    outputs = _fake_outputs()
    first = deploy.deploy_values("dev", "us-east-1", "111122223333", None, IDENTITY)
    config, policies = deploy.render_project("dev", outputs, first, tmp_path / "first")
    stage = config["stages"]["dev"]
    assert stage["subnet_ids"] == ["subnet-aaa", "subnet-bbb"]
    assert stage["environment_variables"]["CONNECTIONS_TABLE"] == "value-of-ConnectionsTableName"
    assert "WEBSOCKET_MANAGEMENT_ENDPOINT" not in stage["environment_variables"]  # first pass: unknown yet
    assert (tmp_path / "first" / "app.py").exists()
    for name in policies:
        assert (tmp_path / "first" / ".chalice" / name).exists()
    assert "from-stack:" not in json.dumps(config)
    assert "from-stack:" not in json.dumps(policies)
    assert stage["environment_variables"]["JWT_ISSUER"] == IDENTITY["JwtIssuer"]

    second = deploy.deploy_values("dev", "us-east-1", "111122223333", "abc123", IDENTITY)
    config, policies = deploy.render_project("dev", outputs, second, tmp_path / "second")
    endpoint = config["stages"]["dev"]["environment_variables"]["WEBSOCKET_MANAGEMENT_ENDPOINT"]
    assert endpoint == "https://abc123.execute-api.us-east-1.amazonaws.com/dev"
    manage = next(s for s in policies["policy-fanout-worker.json"]["Statement"] if s["Sid"] == "PushToWebSocketClients")
    assert manage["Resource"] == [  # posts, and closes of connections whose token expired
        f"arn:aws:execute-api:us-east-1:111122223333:abc123/dev/{method}/@connections/*"
        for method in ("POST", "DELETE")
    ]
    tables = next(s for s in policies["policy-fanout-worker.json"]["Statement"] if s["Sid"] == "Tables")
    assert outputs["ConnectionsTableArn"] + "/index/*" in tables["Resource"]


def test_an_output_the_stack_lacks_is_an_error_not_a_broken_deploy() -> None:
    with pytest.raises(deploy.RenderError, match="NoSuchOutput"):
        deploy.render({"x": "from-stack:NoSuchOutput"}, {}, {})


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_every_function_has_its_own_policy_on_the_stacks_resources_only(stage: str) -> None:
    config, policies = deploy.stage_documents(stage)
    for function in deploy.app_functions():
        assert deploy.policy_file(config, stage, function) in policies, function
    assert set(policies) == {p.name for p in (REPO_ROOT / ".chalice").glob("policy-*.json")}
    for name, policy in policies.items():
        for statement in policy["Statement"]:
            assert statement["Effect"] == "Allow", name
            if statement["Sid"] in UNNARROWABLE:
                continue
            for resource in statement["Resource"]:
                assert resource != "*", (name, statement["Sid"])
                assert resource.startswith(("from-stack:", "arn:aws:")), resource


def test_the_dry_run_renders_the_stage_without_calling_aws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deploy, "BUILD_DIR", tmp_path)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert deploy.deploy("dev", alarm_email="", jwks_url=None, dry_run=True, identity=IDENTITY) == 0
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
def test_the_jobs_may_start_only_the_fanout_worker_which_reaches_its_failure_queue(stage: str) -> None:
    _, policies = deploy.stage_documents(stage)
    for name in ("policy-jobs.json", "policy-rest.json"):
        statements = {s["Sid"]: s for s in policies[name]["Statement"]}
        assert statements["StartFanoutWorkers"]["Action"] == ["lambda:InvokeFunction"]
        (function,) = statements["StartFanoutWorkers"]["Resource"]
        assert function.endswith(f":function:market-data-from-deploy:Stage-{deploy.FANOUT_WORKER}")
    worker = {s["Sid"]: s for s in policies["policy-fanout-worker.json"]["Statement"]}
    assert worker["FanoutFailureDestination"]["Resource"] == ["from-stack:FanoutFailureQueueArn"]


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


# --- identity guard -------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
@pytest.mark.parametrize(
    ("left_out", "variable"),
    [("JwtIssuer", "JWT_ISSUER"), ("JwtAudience", "JWT_AUDIENCE"), ("CorsAllowedOrigins", "CORS_ALLOWED_ORIGINS")],
)
def test_a_deploy_without_the_stages_identity_settings_is_refused(stage: str, left_out: str, variable: str) -> None:
    given = {**IDENTITY, **JWKS}
    del given[left_out]
    with pytest.raises(deploy.RenderError, match=variable):
        deploy.check_stage_settings(stage, deploy.deploy_values(stage, "us-east-1", "111122223333", None, given))


@pytest.mark.parametrize(
    ("name", "value", "variable"),
    [
        ("JwtIssuer", "market-data-local", "JWT_ISSUER"),
        ("JwtAudience", "market-data-dashboard", "JWT_AUDIENCE"),
        ("CorsAllowedOrigins", "http://dashboard.example.com", "CORS_ALLOWED_ORIGINS"),
    ],
)
def test_a_deploy_with_the_local_defaults_or_plain_http_origins_is_refused(
    name: str, value: str, variable: str
) -> None:
    values = deploy.deploy_values("prod", "us-east-1", "111122223333", None, {**IDENTITY, **JWKS, name: value})
    with pytest.raises(deploy.RenderError, match=variable):
        deploy.check_stage_settings("prod", values)


def test_the_dry_run_refuses_a_stage_left_at_the_local_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(deploy, "BUILD_DIR", tmp_path)
    with pytest.raises(deploy.RenderError, match="JWT_ISSUER"):
        deploy.deploy("dev", alarm_email="", jwks_url=None, dry_run=True, identity={})
    assert not (tmp_path / "dev").exists()  # refused before anything was rendered


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_a_complete_identity_passes_the_check(stage: str) -> None:
    deploy.check_stage_settings(stage, deploy.deploy_values(stage, "us-east-1", "1", None, {**IDENTITY, **JWKS}))


# --- throttling before compute, access logs, retention, reserved concurrency, the authorizer --------------


def _settings_of(operations: list[dict[str, str]]) -> dict[str, str]:
    return {operation["path"]: operation["value"] for operation in operations if operation["op"] == "replace"}


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_every_rest_method_is_throttled_within_the_stage_limit(stage: str) -> None:
    import app

    limits = deploy.stage_limits(stage)
    settings = _settings_of(deploy.rest_stage_patch_operations(stage, "arn:aws:logs:us-east-1:1:log-group:x"))
    assert settings["/*/*/throttling/rateLimit"] == str(limits["RestRateLimit"])
    assert settings["/*/*/throttling/burstLimit"] == str(limits["RestBurstLimit"])
    methods = [(path, method) for path, entries in app.app.routes.items() for method in entries]
    assert len(methods) > 30  # every route's method and its OPTIONS
    for path, method in methods:
        key = "/" + path.replace("/", "~1") + f"/{method}"
        rate = float(settings[f"{key}/throttling/rateLimit"])
        burst = int(settings[f"{key}/throttling/burstLimit"])
        assert 0 < rate <= limits["RestRateLimit"], (path, method)
        assert 0 < burst <= limits["RestBurstLimit"], (path, method)
    run = "/" + "/api/v1/market/jobs/{job_name}/run".replace("/", "~1") + "/POST"
    assert settings[f"{run}/throttling/rateLimit"] == str(limits["JobRunRateLimit"])


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_the_rest_stage_logs_access_without_query_strings_and_never_whole_requests(stage: str) -> None:
    destination = "arn:aws:logs:us-east-1:111122223333:log-group:/aws/apigateway/market-data-dev/rest-access"
    settings = _settings_of(deploy.rest_stage_patch_operations(stage, destination))
    assert settings["/accessLogSettings/destinationArn"] == destination
    assert settings["/*/*/logging/loglevel"] == "OFF"
    assert settings["/*/*/logging/dataTrace"] == "false"
    _assert_safe_access_log(settings["/accessLogSettings/format"])


# $context variables an access log line may hold: none carries a query string, a header or a token.
SAFE_CONTEXT_VARIABLES = {
    "requestId", "identity.sourceIp", "requestTimeEpoch", "httpMethod", "resourcePath", "status",
    "responseLength", "responseLatency", "integrationLatency", "authorizer.principalId", "authorizer.status",
    "waf.status", "error.responseType", "routeKey", "eventType", "connectionId", "integrationStatus",
}  # fmt: skip


def _assert_safe_access_log(log_format: str) -> None:
    fields = json.loads(log_format)
    assert fields["requestId"] == "$context.requestId"
    variables = set(re.findall(r"\$context\.([A-Za-z.]+)", log_format))
    assert variables <= SAFE_CONTEXT_VARIABLES, sorted(variables - SAFE_CONTEXT_VARIABLES)
    for forbidden in ("querystring", "header", "path", "token", "$input", "$request"):
        assert forbidden not in log_format.lower().replace("resourcepath", ""), forbidden


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_websocket_connect_and_messages_are_throttled_separately_with_access_logs(stage: str) -> None:
    limits = deploy.stage_limits(stage)
    update = deploy.websocket_stage_update(stage, "arn:aws:logs:us-east-1:1:log-group:ws")
    routes = update["RouteSettings"]
    assert set(routes) == {"$connect", "$default", "$disconnect"}
    assert routes["$connect"]["ThrottlingRateLimit"] == limits["WsConnectRateLimit"]
    assert routes["$connect"]["ThrottlingBurstLimit"] == limits["WsConnectBurstLimit"]
    assert routes["$default"]["ThrottlingRateLimit"] == limits["WsMessageRateLimit"]
    assert routes["$default"]["ThrottlingBurstLimit"] == limits["WsMessageBurstLimit"]
    assert limits["WsConnectRateLimit"] < limits["WsMessageRateLimit"]
    for settings in [*routes.values(), update["DefaultRouteSettings"]]:
        assert settings["ThrottlingRateLimit"] > 0
        assert settings["LoggingLevel"] == "OFF"
        assert settings["DataTraceEnabled"] is False
    assert update["AccessLogSettings"]["DestinationArn"] == "arn:aws:logs:us-east-1:1:log-group:ws"
    _assert_safe_access_log(update["AccessLogSettings"]["Format"])


def test_the_stage_settings_are_applied_to_the_apis_chalice_created(monkeypatch: pytest.MonkeyPatch) -> None:
    """On moto's API Gateway: the REST stage reports the throttles and access log deploy sets. moto has
    no apigatewayv2 UpdateStage, so the WebSocket call is recorded at the client boundary."""

    class RecordingV2:
        def __init__(self) -> None:
            self.calls: list[dict[str, Any]] = []

        def update_stage(self, **arguments: Any) -> None:
            self.calls.append(arguments)

    import boto3
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    outputs = {
        "RestAccessLogGroupArn": "arn:aws:logs:us-east-1:123456789012:log-group:rest",
        "WebSocketAccessLogGroupArn": "arn:aws:logs:us-east-1:123456789012:log-group:ws",
    }
    with mock_aws():
        rest = boto3.client("apigateway", region_name="us-east-1")
        api = rest.create_rest_api(name="market-data")["id"]
        root = rest.get_resources(restApiId=api)["items"][0]["id"]
        rest.put_method(restApiId=api, resourceId=root, httpMethod="GET", authorizationType="NONE")
        rest.put_integration(restApiId=api, resourceId=root, httpMethod="GET", type="MOCK")
        deployment = rest.create_deployment(restApiId=api)["id"]
        rest.create_stage(restApiId=api, stageName="dev", deploymentId=deployment)
        ws = RecordingV2()
        deploy.configure_stages(rest, ws, "dev", api, "wsapi12345", outputs)
        stage = rest.get_stage(restApiId=api, stageName="dev")
    ((ws_call),) = ws.calls
    assert (ws_call["ApiId"], ws_call["StageName"]) == ("wsapi12345", "dev")
    limits = deploy.stage_limits("dev")
    assert stage["methodSettings"]["*/*"]["throttlingRateLimit"] == limits["RestRateLimit"]
    assert stage["methodSettings"]["*/*"]["throttlingBurstLimit"] == limits["RestBurstLimit"]
    assert stage["accessLogSettings"]["destinationArn"] == outputs["RestAccessLogGroupArn"]
    assert ws_call["RouteSettings"]["$connect"]["ThrottlingRateLimit"] == limits["WsConnectRateLimit"]
    assert ws_call["AccessLogSettings"]["DestinationArn"] == outputs["WebSocketAccessLogGroupArn"]


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_every_function_keeps_its_logs_for_the_stages_retention(stage: str) -> None:
    config, _ = deploy.stage_documents(stage)
    retention = config["stages"][stage]["log_retention_in_days"]
    assert retention == deploy.stage_limits(stage)["LogRetentionDays"]
    for function in deploy.app_functions():
        override = deploy._function_config(config, stage, function).get("log_retention_in_days")
        if function == "api_handler":
            # Chalice's packaged template refers to a resource it does not create (aws/chalice#2079): the
            # REST function's log group and its retention come from infra/template.yaml instead.
            assert override == 0
            group = load_template()["Resources"]["RestFunctionLogGroup"]["Properties"]
            assert group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/market-data-${Stage}"}
            assert group["RetentionInDays"] == {"Fn::FindInMap": ["StageLimits", {"Ref": "Stage"}, "LogRetentionDays"]}
        else:
            assert override in (None, retention), function


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_rest_websocket_and_authorizer_functions_have_reserved_concurrency(stage: str) -> None:
    """A flood of REST calls or connects cannot take the concurrency the jobs and workers need."""
    config, _ = deploy.stage_documents(stage)
    reserved = {
        function: deploy._function_config(config, stage, function).get("reserved_concurrency")
        for function in deploy.app_functions()
    }
    counts = [value for value in reserved.values() if isinstance(value, int) and value >= 1]
    assert len(counts) == len(reserved), reserved
    # AWS keeps 100 of the account's default 1,000 unreserved.
    assert sum(counts) <= 900


def test_the_authorizer_guards_every_route_but_the_public_documents_and_preflights() -> None:
    import app
    from chalicelib.http_api import PUBLIC_RESOURCES

    for path, entries in app.app.routes.items():
        for method, entry in entries.items():
            name = entry.authorizer.name if entry.authorizer is not None else None
            if path in PUBLIC_RESOURCES or method == "OPTIONS":
                assert name is None, (path, method)
            else:
                assert name == deploy.AUTHORIZER, (path, method)
    (authorizer,) = app.app.builtin_auth_handlers
    assert authorizer.name == deploy.AUTHORIZER
    assert authorizer.ttl_seconds == 300  # cached per token
    assert authorizer.header == "Authorization"


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_the_authorizer_runs_outside_the_vpc(stage: str) -> None:
    config, _ = deploy.stage_documents(stage)
    authorizer = deploy._function_config(config, stage, deploy.AUTHORIZER)
    assert authorizer["subnet_ids"] == []
    assert authorizer["security_group_ids"] == []
