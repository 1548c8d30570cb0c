"""The packaged path's one template per stage (infra/package.py): `chalice package --merge-template` with
infra/template.yaml, and every value the two-pass path (infra/deploy.py) rendered from a separate stack or
set with API calls after `chalice deploy` wired inside it. Then the release (infra/release.py) against
moto: the uploads and the change set (moto's CloudFormation has no SAM transform and skips the resource
types it does not know, so these tests stop at the change set; they prove nothing about executing it).

The templates are built without the function's dependencies (package.build_template: the template does
not depend on them), about 8 s per stage; the artifacts themselves: tests/integration/test_package_size.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import deploy, package, release
from infra.local.tables import load_template
from tests.conftest import REPO_ROOT

IDENTITY = {
    "JwtIssuer": "https://idp.example.com/",
    "JwtAudience": "market-data-api",
    "CorsAllowedOrigins": "https://dashboard.example.com",
}
JWKS = {"JwtJwksUrl": "https://idp.example.com/.well-known/jwks.json"}
PSEUDO = {"AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix", "AWS::NoValue", "AWS::StackName"}


@pytest.fixture(scope="module", params=deploy.DEPLOYABLE_STAGES)
def merged(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    stage = str(request.param)
    return stage, package.build_template(stage)


def _functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ids = package.function_logical_ids()
    return {name: template["Resources"][logical_id]["Properties"] for name, logical_id in ids.items()}


def _references(document: Any) -> set[str]:
    """Every name a Ref, GetAtt or Sub of the document points at (``X`` of ``X.Attr``)."""
    found: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0] if isinstance(value, list) else str(value).split(".")[0])
            elif key == "Fn::Sub":
                text, variables = (value, {}) if isinstance(value, str) else (value[0], value[1])
                names = {part.split("}")[0] for part in text.split("${")[1:] if not part.startswith("!")}
                found |= {name.split(".")[0] if "::" not in name else name for name in names} - set(variables)
                found |= _references(variables)
            else:
                found |= _references(value)
    elif isinstance(document, list):
        for item in document:
            found |= _references(item)
    return found


def _expected_value(stage: str, value: str, outputs: dict[str, Any]) -> Any:
    """What the template must hold for one of .chalice/config.json's values."""
    if value.startswith(deploy.FROM_STACK):
        return outputs[value.removeprefix(deploy.FROM_STACK)]["Value"]
    if value == f"{deploy.FROM_DEPLOY}WebSocketManagementEndpoint":
        return {"Fn::Sub": f"https://${{WebsocketAPI}}.execute-api.${{AWS::Region}}.amazonaws.com/{stage}"}
    if value.startswith(deploy.FROM_DEPLOY):
        return {"Ref": value.removeprefix(deploy.FROM_DEPLOY)}  # a stack parameter
    return value


def test_nothing_is_left_to_resolve_after_the_stack_exists(merged: tuple[str, dict[str, Any]]) -> None:
    _, template = merged
    assert package.leftover_placeholders(template) == []
    text = json.dumps(template)
    for marker in ("from-stack:", "from-deploy:", "@@"):
        assert marker not in text
    assert template["Transform"] == "AWS::Serverless-2016-10-31"


def test_every_reference_names_a_resource_parameter_or_pseudo_parameter(merged: tuple[str, dict[str, Any]]) -> None:
    _, template = merged
    known = set(template["Resources"]) | set(template["Parameters"]) | PSEUDO
    unknown = _references(template["Resources"]) | _references(template["Outputs"])
    assert unknown - known == set()


def test_every_environment_variable_of_every_function_is_wired_in_the_template(
    merged: tuple[str, dict[str, Any]],
) -> None:
    stage, template = merged
    config, _ = deploy.stage_documents(stage)
    outputs = load_template()["Outputs"]
    functions = _functions(template)
    assert set(functions) == set(deploy.app_functions())
    for function, properties in functions.items():
        expected = deploy.function_environment(config, stage, function)
        variables = properties["Environment"]["Variables"]
        assert set(variables) == set(expected), function
        for name, value in expected.items():
            assert variables[name] == _expected_value(stage, value, outputs), (function, name)


def test_the_websocket_management_endpoint_is_the_apis_own(merged: tuple[str, dict[str, Any]]) -> None:
    stage, template = merged
    endpoint = {"Fn::Sub": f"https://${{WebsocketAPI}}.execute-api.${{AWS::Region}}.amazonaws.com/{stage}"}
    assert template["Resources"]["WebsocketAPI"]["Type"] == "AWS::ApiGatewayV2::Api"
    assert template["Resources"]["WebsocketAPIStage"]["Properties"]["StageName"] == stage
    users = [
        f for f, p in _functions(template).items() if "WEBSOCKET_MANAGEMENT_ENDPOINT" in p["Environment"]["Variables"]
    ]
    assert {"fanout_worker", "websocket_message", "refresh_quotes"} <= set(users)
    for function in users:
        assert _functions(template)[function]["Environment"]["Variables"]["WEBSOCKET_MANAGEMENT_ENDPOINT"] == endpoint
    assert template["Outputs"]["WebSocketManagementEndpoint"]["Value"] == endpoint


def test_identity_settings_are_stack_parameters(merged: tuple[str, dict[str, Any]]) -> None:
    stage, template = merged
    parameters = template["Parameters"]
    wanted = {"JwtIssuer", "JwtAudience", "CorsAllowedOrigins"} | ({"JwtJwksUrl"} if stage == "prod" else set())
    assert wanted == set(parameters) & set(package.IDENTITY_PARAMETERS)
    for name in wanted:
        assert parameters[name]["MinLength"] == 1
    # The two-stack path's parameters are gone; the stage is the package's and no other.
    assert not set(package.TWO_STACK_PARAMETERS) & set(parameters)
    assert parameters["Stage"]["AllowedValues"] == [stage]


def test_each_function_keeps_its_name_policy_and_layers(merged: tuple[str, dict[str, Any]]) -> None:
    """The same names as `chalice deploy` (policies, log groups and the dispatcher use them), the same
    statements as the two-pass path's rendered policies, and the two layers."""
    stage, template = merged
    rendered = deploy.function_policies(
        stage,
        {name: f"value-of-{name}" for name in load_template()["Outputs"]},
        deploy.deploy_values(stage, "us-east-1", "111122223333", "abc123", {**IDENTITY, **JWKS}),
    )
    ids = package.function_logical_ids()
    for function, properties in _functions(template).items():
        assert properties["FunctionName"] == deploy.lambda_function_name(stage, function)
        assert properties["Layers"] == [{"Ref": "YFinanceLayer"}, {"Ref": package.TRACING_LAYER}]
        assert properties["Tracing"] == "Active"
        assert properties["Runtime"] == "python3.11"
        assert properties["CodeUri"] == f"./{package.FUNCTION_ZIP}"
        role = properties["Role"]["Fn::GetAtt"][0]
        (policy,) = template["Resources"][role]["Properties"]["Policies"]
        statements = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
        expected = {s["Sid"]: s for s in rendered[function][0]["Statement"]}
        assert set(statements) == set(expected), function
        for sid, statement in statements.items():
            assert statement["Action"] == expected[sid]["Action"], (function, sid)
            assert len(statement["Resource"]) == len(expected[sid]["Resource"]), (function, sid)
        assert ids[function] in template["Resources"]
    layers = {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::LayerVersion"}
    assert {k: v["Properties"]["ContentUri"] for k, v in layers.items()} == {
        "YFinanceLayer": f"./{package.YFINANCE_LAYER_ZIP}",
        package.TRACING_LAYER: f"./{package.TRACING_LAYER_ZIP}",
    }


def test_the_fanout_worker_can_post_to_this_apis_connections_only(merged: tuple[str, dict[str, Any]]) -> None:
    stage, template = merged
    role = _functions(template)["fanout_worker"]["Role"]["Fn::GetAtt"][0]
    (policy,) = template["Resources"][role]["Properties"]["Policies"]
    manage = next(s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == "PushToWebSocketClients")
    api = "arn:aws:execute-api:${AWS::Region}:${AWS::AccountId}:${WebsocketAPI}"
    assert manage["Resource"] == [{"Fn::Sub": f"{api}/{stage}/{m}/@connections/*"} for m in ("POST", "DELETE")]


def test_the_fanout_worker_gets_its_async_invoke_config_in_the_template(merged: tuple[str, dict[str, Any]]) -> None:
    stage, template = merged
    resource = template["Resources"][package.FANOUT_INVOKE_CONFIG]
    wanted = deploy.fanout_worker_invoke_config(stage, "queue")
    assert resource["Type"] == "AWS::Lambda::EventInvokeConfig"
    properties = resource["Properties"]
    assert properties["FunctionName"] == {"Ref": "FanoutWorker"}
    assert properties["Qualifier"] == "$LATEST"
    assert properties["MaximumRetryAttempts"] == wanted["MaximumRetryAttempts"]
    assert properties["MaximumEventAgeInSeconds"] == wanted["MaximumEventAgeInSeconds"]
    assert properties["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["FanoutFailureQueue", "Arn"]}}
    }


def test_the_rest_stage_gets_the_throttles_access_logs_and_tracing_of_the_two_pass_path(
    merged: tuple[str, dict[str, Any]],
) -> None:
    stage, template = merged
    api = template["Resources"]["RestAPI"]
    properties = api["Properties"]
    limits = deploy.stage_limits(stage)
    default, *methods = properties["MethodSettings"]
    assert default == {
        "ResourcePath": "/*",
        "HttpMethod": "*",
        "ThrottlingRateLimit": float(limits["RestRateLimit"]),
        "ThrottlingBurstLimit": limits["RestBurstLimit"],
        "LoggingLevel": "OFF",
        "DataTraceEnabled": False,
        "MetricsEnabled": False,
    }
    # The same per-method throttles the two-pass path patched onto the stage after the deploy.
    patched = {
        op["path"].rsplit("/throttling/", 1)[0] + "|" + op["path"].rsplit("/", 1)[1]: float(op["value"])
        for op in deploy.rest_stage_patch_operations(stage, "arn")
        if "/throttling/" in op["path"] and not op["path"].startswith("/*/*")
    }
    in_template = {}
    for setting in methods:
        key = f"{setting['ResourcePath']}/{setting['HttpMethod']}"
        in_template[f"{key}|rateLimit"] = setting["ThrottlingRateLimit"]
        in_template[f"{key}|burstLimit"] = float(setting["ThrottlingBurstLimit"])
    assert in_template == patched
    run = "/~1api~1v1~1market~1jobs~1{job_name}~1run/POST"
    assert in_template[f"{run}|rateLimit"] == limits["JobRunRateLimit"]
    assert properties["AccessLogSetting"]["Format"] == deploy.REST_ACCESS_LOG_FORMAT
    assert "${RestAccessLogGroup}" in properties["AccessLogSetting"]["DestinationArn"]["Fn::Sub"]
    assert properties["TracingEnabled"] is True  # xray: true in both stages, as `chalice deploy` sets it
    assert api["DependsOn"] == [package.API_LOGGING_READY]


def test_the_websocket_stage_gets_the_throttles_and_access_logs_of_the_two_pass_path(
    merged: tuple[str, dict[str, Any]],
) -> None:
    stage, template = merged
    resource = template["Resources"]["WebsocketAPIStage"]
    wanted = deploy.websocket_stage_update(stage, "arn")
    properties = resource["Properties"]
    assert properties["DefaultRouteSettings"] == wanted["DefaultRouteSettings"]
    assert properties["RouteSettings"] == wanted["RouteSettings"]
    assert properties["AccessLogSettings"]["Format"] == deploy.WEBSOCKET_ACCESS_LOG_FORMAT
    assert "${WebSocketAccessLogGroup}" in properties["AccessLogSettings"]["DestinationArn"]["Fn::Sub"]
    assert resource["DependsOn"] == [package.API_LOGGING_READY]
    # The handle waits for the account's logging role when this stack sets it.
    ready = template["Resources"][package.API_LOGGING_READY]
    assert ready["Metadata"]["ApiGatewayAccount"]["Fn::If"][:2] == [
        "CreateApiGatewayLogsRole",
        {"Ref": "ApiGatewayAccount"},
    ]


def test_the_gateway_responses_ship_inside_the_rest_apis_definition(merged: tuple[str, dict[str, Any]]) -> None:
    _, template = merged
    source = {
        r["Properties"]["ResponseType"]: r["Properties"]
        for r in load_template()["Resources"].values()
        if r["Type"] == "AWS::ApiGateway::GatewayResponse"
    }
    body = template["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    responses = body["x-amazon-apigateway-gateway-responses"]
    assert len(source) == 6
    assert set(responses) == set(source)
    for kind, properties in source.items():
        assert responses[kind]["statusCode"] == properties["StatusCode"]  # a string: "404"
        assert responses[kind]["responseTemplates"] == properties["ResponseTemplates"]
        assert responses[kind]["responseParameters"] == properties["ResponseParameters"]
    assert not [r for r in template["Resources"].values() if r["Type"] == "AWS::ApiGateway::GatewayResponse"]
    assert "/api/v1/market/quote/{symbol}" in body["paths"]  # merged into Chalice's body, not replacing it
    association = template["Resources"]["RestWebAclAssociation"]
    assert association["Condition"] == "WafOn"
    assert "${RestAPI.Stage}" in association["Properties"]["ResourceArn"]["Fn::Sub"]


def test_cfn_lint_accepts_the_merged_template(merged: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    stage, template = merged
    path = tmp_path / f"sam-{stage}.json"
    package.write_template(template, path)
    cfn_lint = REPO_ROOT / ".venv" / "bin" / "cfn-lint"
    completed = subprocess.run([str(cfn_lint), str(path)], capture_output=True, text=True, timeout=300, check=False)
    # cfn-lint's exit code is a bit mask: 1 its own failure, 2 errors, 4 warnings, 8 informational.
    assert completed.returncode & 0b11 == 0, completed.stdout + completed.stderr


# --- the resolver on its own ----------------------------------------------------------------------------


def test_the_resolver_turns_placeholders_into_intrinsics_and_escapes_literal_dollar_braces() -> None:
    outputs = {
        "TableArn": {"Fn::GetAtt": ["Table", "Arn"]},
        "Subnets": {"Fn::Join": [",", [{"Ref": "A"}, {"Ref": "B"}]]},
        "Url": {"Fn::Sub": "rediss://${Redis.Address}:6379/0"},
    }
    resolver = package.Resolver("dev", outputs)
    document = {
        "arn": "@@stack:TableArn@@",
        "index": "@@stack:TableArn@@/index/*",
        "subnets": ["@@stack:Subnets@@", "subnet-fixed"],
        "log": "arn:aws:logs:@@deploy:Region@@:@@deploy:Account@@:log-group:x-${literal}",
        "url": "@@stack:Url@@",
        "issuer": "@@deploy:JwtIssuer@@",
    }
    assert resolver.resolve(document) == {
        "arn": {"Fn::GetAtt": ["Table", "Arn"]},
        "index": {"Fn::Sub": "${Table.Arn}/index/*"},
        "subnets": [{"Ref": "A"}, {"Ref": "B"}, "subnet-fixed"],
        "log": {"Fn::Sub": "arn:aws:logs:${AWS::Region}:${AWS::AccountId}:log-group:x-${!literal}"},
        "url": {"Fn::Sub": "rediss://${Redis.Address}:6379/0"},
        "issuer": {"Ref": "JwtIssuer"},
    }
    with pytest.raises(package.PackageError, match="NoSuchOutput"):
        resolver.resolve({"x": "@@stack:NoSuchOutput@@"})
    with pytest.raises(package.PackageError, match="part of a string"):
        resolver.resolve({"x": "prefix-@@stack:Subnets@@"})


def test_a_build_on_another_python_minor_version_is_refused() -> None:
    with pytest.raises(package.PackageError, match=r"python3\.12"):
        package.check_python("python3.12")
    package.check_python()  # this interpreter is the runtime's (3.11)


# --- the release against moto ---------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.session.Session(region_name="eu-west-1")


def _package_dir(stage: str, template: dict[str, Any], directory: Path) -> Path:
    """A package directory holding the real merged template and small stand-in zips."""
    directory.mkdir()
    package.write_template(template, directory / package.TEMPLATE_NAME)
    for name in (package.FUNCTION_ZIP, package.YFINANCE_LAYER_ZIP, package.TRACING_LAYER_ZIP):
        with zipfile.ZipFile(directory / name, "w") as archive:
            archive.writestr("marker.txt", f"{stage} {name}")
    return directory


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_release_uploads_content_addressed_artifacts_and_creates_a_change_set_on_moto(
    merged: tuple[str, dict[str, Any]], tmp_path: Path, aws: Any
) -> None:
    stage, template = merged
    directory = _package_dir(stage, template, tmp_path / "package")
    identity = {**IDENTITY, **(JWKS if stage == "prod" else {})}
    printed: list[str] = []
    first = release.deploy_package(
        stage, identity=identity, directory=directory, session=aws, execute=False, poll_seconds=1, report=printed.append
    )
    assert first.change_set_type == "CREATE"
    assert first.change_set_id
    assert not first.executed
    bucket = f"market-data-{stage}-artifacts-123456789012-eu-west-1"
    assert first.bucket == bucket
    s3 = aws.client("s3")
    objects = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    for name in (package.FUNCTION_ZIP, package.YFINANCE_LAYER_ZIP, package.TRACING_LAYER_ZIP):
        key = f"package/{Path(name).stem}-{_sha(directory / name)}.zip"
        assert key in objects, key
        assert first.uploaded[name] == f"s3://{bucket}/{key}"
    (template_key,) = [key for key in objects if key.startswith("package/sam-")]
    stored = json.loads(s3.get_object(Bucket=bucket, Key=template_key)["Body"].read())
    for logical_id, resource in stored["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            assert resource["Properties"]["CodeUri"] == first.uploaded[package.FUNCTION_ZIP], logical_id
    assert (
        stored["Resources"]["YFinanceLayer"]["Properties"]["ContentUri"] == first.uploaded[package.YFINANCE_LAYER_ZIP]
    )
    # Apart from the artifact locations, the stored template is the packaged one.
    assert stored["Resources"]["RestAPI"] == template["Resources"]["RestAPI"]
    cloudformation = aws.client("cloudformation")
    change_set = cloudformation.describe_change_set(ChangeSetName=first.change_set_id)
    assert change_set["StackName"] == f"market-data-{stage}"
    given = {p["ParameterKey"]: p["ParameterValue"] for p in change_set["Parameters"]}
    assert {k: given[k] for k in identity} == identity
    # Not executed: the new stack waits in review, as an operator's first run on a sandbox leaves it.
    stack = cloudformation.describe_stacks(StackName=f"market-data-{stage}")["Stacks"][0]
    assert stack["StackStatus"] == "REVIEW_IN_PROGRESS"
    assert any("not executed" in line for line in printed)

    # Again: nothing is uploaded twice, and the stack still in review gets another CREATE change set.
    before = {k: o["LastModified"] for k, o in objects.items()}
    second = release.deploy_package(
        stage, identity=identity, directory=directory, session=aws, execute=False, poll_seconds=1, report=printed.append
    )
    after = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert after == before
    assert second.change_set_type == "CREATE"
    assert second.change_set_id != first.change_set_id


def test_release_refuses_the_local_identity_before_uploading_anything(
    merged: tuple[str, dict[str, Any]], tmp_path: Path, aws: Any
) -> None:
    stage, template = merged
    directory = _package_dir(stage, template, tmp_path / "package")
    with pytest.raises(deploy.RenderError, match="JWT_ISSUER"):
        release.deploy_package(
            stage, identity={**IDENTITY, **JWKS, "JwtIssuer": "market-data-local"}, directory=directory, session=aws
        )
    assert aws.client("s3").list_buckets()["Buckets"] == []


def test_release_refuses_a_package_of_another_stage(merged: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    stage, template = merged
    other = next(s for s in deploy.DEPLOYABLE_STAGES if s != stage)
    directory = _package_dir(stage, template, tmp_path / "package")
    with pytest.raises(release.ReleaseError, match="packaged for stage"):
        release.deploy_package(other, identity={**IDENTITY, **JWKS}, directory=directory, session=object())


def test_destroy_deletes_the_stack_and_empties_and_deletes_the_artifact_bucket_on_moto(
    merged: tuple[str, dict[str, Any]], tmp_path: Path, aws: Any
) -> None:
    stage, template = merged
    directory = _package_dir(stage, template, tmp_path / "package")
    identity = {**IDENTITY, **(JWKS if stage == "prod" else {})}
    done = release.deploy_package(
        stage, identity=identity, directory=directory, session=aws, execute=False, poll_seconds=1, report=print
    )
    s3 = aws.client("s3")
    assert s3.list_objects_v2(Bucket=done.bucket)["KeyCount"] == 4  # three zips and the template
    release.destroy_package(stage, session=aws, poll_seconds=1)
    assert done.bucket not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}
    stacks = aws.client("cloudformation").list_stacks()["StackSummaries"]
    assert {s["StackStatus"] for s in stacks if s["StackName"] == f"market-data-{stage}"} == {"DELETE_COMPLETE"}
