"""infra/template.yaml: what the deploy needs is declared, the tables part deploys (into moto's
CloudFormation) exactly as the local stack creates it, the app's stores work on those tables, and Redis
is reachable from the Lambdas only."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.dynamodb_connections import DynamoDBConnectionStore
from chalicelib.adapters.dynamodb_job_runs import DynamoDBJobRunStore
from chalicelib.ports import ConnectionRecord, JobRun, RunStatus
from infra.local.tables import load_template, table_definitions

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
TABLE_IDS = ("ConnectionsTable", "SubscriptionsTable", "RegistryTable", "JobRunsTable")
LAMBDA_SG = "LambdaSecurityGroup"
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")

OUTPUTS = {
    "ConnectionsTableName",
    "SubscriptionsTableName",
    "RegistryTableName",
    "JobRunsTableName",
    "ConnectionsTableArn",
    "SubscriptionsTableArn",
    "RegistryTableArn",
    "JobRunsTableArn",
    "PrivateSubnetIds",
    "LambdaSecurityGroupId",
    "RedisUrl",
    "RedisAuthSecretArn",
    "JwtSecretArn",
    "ProviderKeysSecretArn",
    "FanoutFailureQueueArn",
    "AlarmTopicArn",
    "YFinanceLayerArn",
    "DashboardName",
    "RestAccessLogGroupArn",
    "WebSocketAccessLogGroupArn",
}


def _of_type(resource_type: str) -> dict[str, dict[str, Any]]:
    return {logical_id: r for logical_id, r in RESOURCES.items() if r["Type"] == resource_type}


def _refs(value: Any) -> set[str]:
    """Logical ids a property value points at through Ref or GetAtt."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return {value["Ref"]}
        if set(value) == {"Fn::GetAtt"}:
            return {value["Fn::GetAtt"][0]}
        if set(value) == {"Fn::Sub"}:
            sub = value["Fn::Sub"]
            text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
            named = {m.split(".", 1)[0] for m in _SUB_VARIABLE.findall(text)} - set(variables)
            return {n for n in named if not n.startswith("AWS::")} | _refs(list(variables.values()))
        return set().union(*(_refs(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_refs(v) for v in value)) if value else set()
    return set()


def _alarm_texts(alarm: dict[str, Any]) -> str:
    return json.dumps(alarm["Properties"])


# --- (a) parameters, conditions, resources, outputs ---------------------------------------------------


def test_parameters_and_conditions() -> None:
    parameters = TEMPLATE["Parameters"]
    assert parameters["Stage"]["AllowedValues"] == ["local", "dev", "prod"]
    assert {"Stage", "LayerBucket", "LayerKey", "AlarmEmail"} <= set(parameters)
    assert parameters["AlarmEmail"]["Default"] == ""
    conditions = TEMPLATE["Conditions"]
    assert conditions["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert conditions["HasAlarmEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]}


def test_outputs_are_exactly_the_ones_the_stage_config_consumes() -> None:
    assert set(TEMPLATE["Outputs"]) == OUTPUTS
    redis_url = TEMPLATE["Outputs"]["RedisUrl"]["Value"]["Fn::Sub"]
    assert redis_url.startswith("rediss://")
    assert redis_url.endswith("/0")
    subnets = TEMPLATE["Outputs"]["PrivateSubnetIds"]["Value"]
    assert subnets == {"Fn::Join": [",", [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]]}


def test_network_two_azs_one_nat_and_a_dynamodb_gateway_endpoint() -> None:
    (vpc,) = _of_type("AWS::EC2::VPC").values()
    assert vpc["Properties"]["CidrBlock"] == "10.20.0.0/16"
    subnets = _of_type("AWS::EC2::Subnet")
    assert set(subnets) == {"PublicSubnetA", "PublicSubnetB", "PrivateSubnetA", "PrivateSubnetB"}
    for suffix, index in (("A", 0), ("B", 1)):
        for kind in ("Public", "Private"):
            az = subnets[f"{kind}Subnet{suffix}"]["Properties"]["AvailabilityZone"]
            assert az == {"Fn::Select": [index, {"Fn::GetAZs": ""}]}
    (nat,) = _of_type("AWS::EC2::NatGateway").values()
    assert nat["Properties"]["SubnetId"] == {"Ref": "PublicSubnetA"}
    routes = _of_type("AWS::EC2::Route")
    private_tables = {"PrivateRouteTableA", "PrivateRouteTableB"}
    nat_routes = {r["Properties"]["RouteTableId"]["Ref"] for r in routes.values() if "NatGatewayId" in r["Properties"]}
    assert nat_routes == private_tables
    endpoints = _of_type("AWS::EC2::VPCEndpoint")
    dynamodb = [e["Properties"] for e in endpoints.values() if "dynamodb" in json.dumps(e["Properties"]["ServiceName"])]
    assert len(dynamodb) == 1
    assert dynamodb[0]["VpcEndpointType"] == "Gateway"
    assert _refs(dynamodb[0]["RouteTableIds"]) == private_tables


def test_redis_replication_group_is_multi_az_in_prod_single_node_in_dev() -> None:
    (group,) = _of_type("AWS::ElastiCache::ReplicationGroup").values()
    props = group["Properties"]
    assert props["Engine"] == "redis"
    assert str(props["EngineVersion"]).startswith("7.")
    assert TEMPLATE["Parameters"]["RedisNodeType"]["Default"] == "cache.t4g.small"
    assert props["NumCacheClusters"] == {"Fn::If": ["IsProd", 2, 1]}
    assert props["AutomaticFailoverEnabled"] == {"Fn::If": ["IsProd", True, False]}
    assert props["MultiAZEnabled"] == {"Fn::If": ["IsProd", True, False]}
    assert props["AtRestEncryptionEnabled"] is True
    assert props["AuthToken"] == {"Fn::Sub": "{{resolve:secretsmanager:${RedisAuthSecret}:SecretString:password}}"}
    subnet_group = RESOURCES[props["CacheSubnetGroupName"]["Ref"]]
    assert _refs(subnet_group["Properties"]["SubnetIds"]) == {"PrivateSubnetA", "PrivateSubnetB"}


def test_secrets_are_generated_or_left_for_operators() -> None:
    secrets = _of_type("AWS::SecretsManager::Secret")
    assert {"RedisAuthSecret", "JwtSecret", "ProviderKeysSecret"} <= set(secrets)
    redis = secrets["RedisAuthSecret"]["Properties"]["GenerateSecretString"]
    assert json.loads(redis["SecretStringTemplate"]) == {"username": "default"}
    assert (redis["GenerateStringKey"], redis["PasswordLength"], redis["ExcludePunctuation"]) == ("password", 64, True)
    jwt = secrets["JwtSecret"]["Properties"]["GenerateSecretString"]
    assert (jwt["GenerateStringKey"], jwt["PasswordLength"]) == ("secret", 64)
    keys = secrets["ProviderKeysSecret"]["Properties"]
    assert json.loads(keys["SecretString"]) == {
        "ALPHA_VANTAGE_API_KEY": "",
        "FINANCIAL_MODELING_PREP_API_KEY": "",
        "TIINGO_API_KEY": "",
    }
    assert "put-secret-value" in keys["Description"]


def test_layer_comes_from_s3_parameters() -> None:
    layer = RESOURCES["YFinanceLayer"]
    assert layer["Type"] == "AWS::Lambda::LayerVersion"
    props = layer["Properties"]
    assert props["Content"] == {"S3Bucket": {"Ref": "LayerBucket"}, "S3Key": {"Ref": "LayerKey"}}
    assert props["CompatibleRuntimes"] == ["python3.11"]
    assert props["CompatibleArchitectures"] == ["x86_64"]


def test_alarm_topic_subscription_only_with_an_email() -> None:
    (subscription,) = _of_type("AWS::SNS::Subscription").values()
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}
    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}


def test_every_alarm_notifies_the_topic_and_none_uses_search() -> None:
    alarms = _of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 13
    for logical_id, alarm in alarms.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
        assert props["OKActions"] == [{"Ref": "AlarmTopic"}], logical_id
        # PutMetricAlarm rejects SEARCH(); whole-service alarms use Metrics Insights queries instead.
        assert "SEARCH(" not in _alarm_texts(alarm), logical_id


def test_the_issues_alarms_exist() -> None:
    texts = {logical_id: _alarm_texts(alarm) for logical_id, alarm in _of_type("AWS::CloudWatch::Alarm").items()}
    expected = {
        "ServerErrorRateAlarm": ("ServerErrors", "Requests"),
        "LatencyP99Alarm": ("Latency", "p99"),
        "CacheHitRateAlarm": ("CacheHit", "CacheMiss"),
        "RefreshQuotesJobFailingAlarm": ("JobRun", "failed", "refresh_quotes"),
        "RefreshQuotesLateAlarm": ("JobRun", "refresh_quotes"),
        "AllProvidersFailingAlarm": ("ProviderCall", "ProviderError"),
        "RedisCpuAlarm": ("EngineCPUUtilization",),
        "RedisMemoryAlarm": ("DatabaseMemoryUsagePercentage",),
        "ConnectionsThrottleAlarm": ("ThrottledRequests", "ConnectionsTable"),
        "SubscriptionsThrottleAlarm": ("ThrottledRequests", "SubscriptionsTable"),
        "RegistryThrottleAlarm": ("ThrottledRequests", "RegistryTable"),
        "JobRunsThrottleAlarm": ("ThrottledRequests", "JobRunsTable"),
        "LambdaErrorsAlarm": ("AWS/Lambda", "Errors"),
        "LambdaThrottlesAlarm": ("AWS/Lambda", "Throttles"),
    }
    for logical_id, needles in expected.items():
        assert logical_id in texts, logical_id
        for needle in needles:
            assert needle in texts[logical_id], (logical_id, needle)
    late = RESOURCES["RefreshQuotesLateAlarm"]["Properties"]
    assert late["TreatMissingData"] == "breaching"
    assert late["Metrics"][0]["Period"] == 300


def _emitted_dimension_sets(capsys: pytest.CaptureFixture[str]) -> dict[str, list[set[str]]]:
    """What chalicelib/observability.py really writes for each metric the alarms read."""
    from chalicelib import observability

    capsys.readouterr()
    own = {
        "ServerErrors": {"route": "GET /x"},
        "Requests": {"route": "GET /x"},
        "CacheHit": {"kind": "quote"},
        "CacheMiss": {"kind": "quote"},
        "ProviderCall": {"provider": "yahoo", "kind": "quote"},
        "ProviderError": {"provider": "yahoo", "code": "provider_timeout"},
        "JobRun": {"job": "refresh_quotes", "status": "failed"},
    }
    for name, dimensions in own.items():
        observability.count(name, dimensions=dimensions)
    observability.milliseconds("Latency", 12.5, dimensions={"route": "GET /x"})
    sets: dict[str, list[set[str]]] = {}
    for line in capsys.readouterr().out.splitlines():
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                sets[metric["Name"]] = [set(d) for d in directive["Dimensions"]]
    return sets


def test_alarm_queries_read_dimension_sets_the_service_really_emits(capsys: pytest.CaptureFixture[str]) -> None:
    # CloudWatch stores a metric under exactly the dimension sets its EMF line declares: a query or
    # MetricStat naming any other set matches nothing and the alarm never fires.
    emitted = _emitted_dimension_sets(capsys)
    assert emitted["Requests"] == [{"service", "route"}, {"service"}]  # per route, and rolled up
    query = re.compile(r'SELECT \w+\((\w+)\) FROM SCHEMA\("MarketData", ([\w, ]+)\)')
    read: set[str] = set()
    for alarm in _of_type("AWS::CloudWatch::Alarm").values():
        for metric in alarm["Properties"].get("Metrics", []):
            expression = metric.get("Expression")
            match = query.search(expression) if isinstance(expression, str) else None
            if match is not None:
                name, dimensions = match.group(1), {d.strip() for d in match.group(2).split(",")}
                assert dimensions in emitted[name], name
                assert "Period" in metric, name
                read.add(name)
            stat = metric.get("MetricStat")
            if stat is not None and stat["Metric"].get("Namespace") == "MarketData":
                name = stat["Metric"]["MetricName"]
                dimensions = {d["Name"] for d in stat["Metric"]["Dimensions"]}
                assert dimensions in emitted[name], name
                read.add(name)
    assert read == set(emitted)


def test_ratio_alarms_use_plain_metric_math_on_the_rollups() -> None:
    # An alarm can hold one Metrics Insights query at most; the ratios read the service-wide rollups.
    for name in ("ServerErrorRateAlarm", "CacheHitRateAlarm", "AllProvidersFailingAlarm"):
        metrics = RESOURCES[name]["Properties"]["Metrics"]
        assert not any("SELECT" in str(m.get("Expression", "")) for m in metrics), name
        stats = [m["MetricStat"] for m in metrics if "MetricStat" in m]
        assert len(stats) == 2, name
        for stat in stats:
            assert stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": "market-data"}]


def test_latency_alarm_routes_are_real_routes_and_job_alarms_real_jobs() -> None:
    from app import ROUTES
    from chalicelib import jobs_api

    routes = {f"{doc.method} {doc.path}" for doc in ROUTES}
    stats = [m["MetricStat"] for m in RESOURCES["LatencyP99Alarm"]["Properties"]["Metrics"] if "MetricStat" in m]
    assert 1 <= len(stats) <= 10  # an alarm's math expression takes at most 10 metrics
    for stat in stats:
        dimensions = {d["Name"]: d["Value"] for d in stat["Metric"]["Dimensions"]}
        assert set(dimensions) == {"service", "route"}
        assert dimensions["service"] == "market-data"
        assert dimensions["route"] in routes
        assert stat["Stat"] == "p99"
    jobs = {spec.name for spec in jobs_api.job_specs()}
    failing = [
        a["Properties"]
        for a in _of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("MetricName") == "JobRun"
    ]
    alarmed = {d["Value"] for props in failing for d in props["Dimensions"] if d["Name"] == "job"}
    assert alarmed == jobs


def test_dashboard_body_is_json_with_the_stage_name() -> None:
    dashboard = RESOURCES["Dashboard"]["Properties"]
    assert dashboard["DashboardName"] == {"Fn::Sub": "market-data-${Stage}"}
    body = re.sub(r"\$\{[^}]+\}", "X", dashboard["DashboardBody"]["Fn::Sub"])
    widgets = json.loads(body)["widgets"]
    text = json.dumps(widgets)
    for metric in ("Requests", "ServerErrors", "Latency", "CacheHit", "ProviderCall", "JobRun", "FanoutSent"):
        assert metric in text


# --- (b) the tables part deploys into moto's CloudFormation ---------------------------------------------


def _tables_stub() -> dict[str, Any]:
    """The template's tables, their Stage parameter and their outputs, as a template of their own."""
    outputs = {
        name: output
        for name, output in TEMPLATE["Outputs"].items()
        if (refs := _refs(output["Value"])) and refs <= set(TABLE_IDS)
    }
    assert len(outputs) == 2 * len(TABLE_IDS)
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": {"Stage": TEMPLATE["Parameters"]["Stage"]},
        "Resources": {logical_id: RESOURCES[logical_id] for logical_id in TABLE_IDS},
        "Outputs": outputs,
    }


@pytest.fixture
def aws(clean_env: pytest.MonkeyPatch) -> Iterator[None]:
    with mock_aws():
        yield


def _deploy(stage: str) -> dict[str, str]:
    cloudformation = boto3.client("cloudformation", region_name="us-east-1")
    cloudformation.create_stack(
        StackName=f"market-data-{stage}",
        TemplateBody=json.dumps(_tables_stub()),
        Parameters=[{"ParameterKey": "Stage", "ParameterValue": stage}],
    )
    (stack,) = cloudformation.describe_stacks(StackName=f"market-data-{stage}")["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    return {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}


def test_every_table_of_the_template_is_in_the_stub() -> None:
    assert set(_of_type("AWS::DynamoDB::Table")) == set(TABLE_IDS)


@pytest.mark.usefixtures("aws")
@pytest.mark.parametrize("stage", ["local", "dev", "prod"])
def test_stack_tables_equal_the_local_stacks_definitions(stage: str) -> None:
    outputs = _deploy(stage)
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    for definition in table_definitions(stage):
        expected = definition.create_kwargs
        assert outputs[f"{definition.logical_id}Name"] == definition.table_name
        table = dynamodb.describe_table(TableName=definition.table_name)["Table"]
        assert outputs[f"{definition.logical_id}Arn"] == table["TableArn"]
        assert table["KeySchema"] == expected["KeySchema"]
        assert sorted(table["AttributeDefinitions"], key=str) == sorted(expected["AttributeDefinitions"], key=str)
        assert table["BillingModeSummary"]["BillingMode"] == expected["BillingMode"]
        deployed = {
            index["IndexName"]: (index["KeySchema"], index["Projection"])
            for index in table.get("GlobalSecondaryIndexes", [])
        }
        wanted = {
            index["IndexName"]: (index["KeySchema"], index["Projection"])
            for index in expected.get("GlobalSecondaryIndexes", [])
        }
        assert deployed == wanted
    assert sorted(dynamodb.list_tables()["TableNames"]) == sorted(d.table_name for d in table_definitions(stage))


@pytest.mark.usefixtures("aws")
def test_the_app_stores_work_on_the_stack_created_tables() -> None:
    outputs = _deploy("dev")
    client = boto3.client("dynamodb", region_name="us-east-1")
    now = datetime(2026, 1, 5, 15, 30, tzinfo=UTC)
    expires_at = int(now.timestamp()) + 7800

    connections = DynamoDBConnectionStore(
        client,
        outputs["ConnectionsTableName"],
        outputs["SubscriptionsTableName"],
        outputs["RegistryTableName"],
        shard_count=4,
        clock=now.timestamp,
    )
    assert connections.add_connection(
        ConnectionRecord(connection_id="c-1", user_id="alice", connected_at=now, expires_at=expires_at, shard=3),
        max_per_user=1,  # the registry table: the user's slots
    )
    record = connections.get_connection("c-1", now=now.timestamp())
    assert record is not None
    assert (record.connection_id, record.user_id, record.expires_at) == ("c-1", "alice", expires_at)
    assert connections.add_subscriptions("c-1", ["quote:AAPL"], expires_at=expires_at) == ["quote:AAPL"]
    assert connections.subscribers("quote:AAPL", now=now.timestamp()) == ["c-1"]  # the subscriptions table
    assert [c.connection_id for c in connections.connections_of_user("alice", now=now.timestamp())] == ["c-1"]
    assert [c.connection_id for c in connections.connections_in_shard(3, now=now.timestamp())] == ["c-1"]  # by-shard
    assert connections.topic_registry().counts == {3: {"quote:AAPL": 1}}

    runs = DynamoDBJobRunStore(client, outputs["JobRunsTableName"])
    run = JobRun(
        task_id="0d9c1f7e-5a36-4c44-9f3f-2b1b8f1d6a10",
        job_name="refresh_quotes",
        trigger="schedule",
        status=RunStatus.RUNNING,
        started_at=now,
        expires_at=expires_at,
    )
    assert runs.start(run) is True
    stored = runs.get(run.task_id, now=now.timestamp())
    assert stored is not None
    assert (stored.job_name, stored.status, stored.started_at) == ("refresh_quotes", RunStatus.RUNNING, now)
    assert [r.task_id for r in runs.recent("refresh_quotes", limit=5, now=now.timestamp())] == [run.task_id]  # by-job


# --- (c) Redis is reachable from the Lambdas only, over TLS; no execute-api endpoint --------------------


def test_redis_accepts_connections_from_the_lambda_security_group_only() -> None:
    redis_groups = set()
    for resource in [
        *_of_type("AWS::ElastiCache::ReplicationGroup").values(),
        *_of_type("AWS::ElastiCache::CacheCluster").values(),
    ]:
        props = resource["Properties"]
        redis_groups |= _refs(props.get("SecurityGroupIds", [])) | _refs(props.get("VpcSecurityGroupIds", []))
    assert redis_groups == {"RedisSecurityGroup"}

    rules = [
        rule
        for logical_id in redis_groups
        for rule in RESOURCES[logical_id]["Properties"].get("SecurityGroupIngress", [])
    ]
    rules += [
        r["Properties"]
        for r in _of_type("AWS::EC2::SecurityGroupIngress").values()
        if _refs(r["Properties"].get("GroupId")) & redis_groups
    ]
    assert rules
    for rule in rules:
        assert _refs(rule.get("SourceSecurityGroupId")) == {LAMBDA_SG}, rule
        assert not {"CidrIp", "CidrIpv6", "SourcePrefixListId"} & set(rule), rule
        assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 6379, 6379)


def test_redis_encrypts_in_transit() -> None:
    groups = _of_type("AWS::ElastiCache::ReplicationGroup")
    assert groups
    for props in (g["Properties"] for g in groups.values()):
        assert props["TransitEncryptionEnabled"] is True
        assert props["AtRestEncryptionEnabled"] is True
        assert "resolve:secretsmanager" in json.dumps(props["AuthToken"])
    assert not _of_type("AWS::ElastiCache::CacheCluster")  # a bare cluster could skip TLS


def test_no_execute_api_interface_endpoint() -> None:
    # Private DNS for execute-api would capture the public WebSocket API's @connections host.
    for logical_id, endpoint in _of_type("AWS::EC2::VPCEndpoint").items():
        assert "execute-api" not in json.dumps(endpoint["Properties"]["ServiceName"]), logical_id
        assert endpoint["Properties"].get("VpcEndpointType") == "Gateway", logical_id


def test_a_failed_fanout_shard_lands_in_a_queue_whose_alarm_pages() -> None:
    resources = TEMPLATE["Resources"]
    queue = resources["FanoutFailureQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    alarm = resources["FanoutFailureAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["FanoutFailureQueue", "QueueName"]}}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert TEMPLATE["Outputs"]["FanoutFailureQueueArn"]["Value"] == {"Fn::GetAtt": ["FanoutFailureQueue", "Arn"]}


# --- the REST API's answer for routes and methods it does not declare -----------------------------------


def test_missing_route_gateway_response_is_our_404_on_chalices_rest_api() -> None:
    parameter = TEMPLATE["Parameters"]["RestApiId"]
    assert parameter["Default"] == ""  # before the first `chalice deploy` there is no API to attach it to
    assert TEMPLATE["Conditions"]["HasRestApi"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "RestApiId"}, ""]}]}
    response = RESOURCES["MissingRouteGatewayResponse"]
    assert response["Condition"] == "HasRestApi"
    props = response["Properties"]
    assert props["RestApiId"] == {"Ref": "RestApiId"}
    # What API Gateway REST answers for an undeclared method or path (403 by default).
    assert props["ResponseType"] == "MISSING_AUTHENTICATION_TOKEN"
    assert props["StatusCode"] == "404"
    from infra.local.gateway import NO_ROUTE_HEADERS

    headers = {
        name.removeprefix("gatewayresponse.header."): value.strip("'")
        for name, value in props["ResponseParameters"].items()
    }
    assert headers == NO_ROUTE_HEADERS  # what the local gateway sends with its 404
    assert set(props["ResponseTemplates"]) == {"application/json"}


@pytest.mark.parametrize(("method", "path"), [("TRACE", "/api/v1/market/sentiment"), ("GET", "/nope")])
def test_missing_route_body_is_the_one_the_local_gateway_sends(method: str, path: str) -> None:
    from infra.local.gateway import error_body, no_route_message

    template = RESOURCES["MissingRouteGatewayResponse"]["Properties"]["ResponseTemplates"]["application/json"]
    context = {"$context.httpMethod": method, "$context.path": path, "$context.requestId": "req-1"}
    rendered = template
    for variable, value in context.items():
        rendered = rendered.replace(variable, value)
    assert "$" not in rendered, "only $context variables API Gateway substitutes in gateway responses"
    assert json.loads(rendered) == error_body("not_found", no_route_message(method, path), "req-1")


# --- abuse resistance: gateway answers, WAF, access log groups -------------------------------------------


@pytest.mark.parametrize(
    ("response_type", "status", "code"),
    [
        ("UNAUTHORIZED", "401", "unauthorized"),
        ("ACCESS_DENIED", "403", "forbidden"),
        ("AUTHORIZER_FAILURE", "503", "service_unavailable"),
        ("THROTTLED", "429", "rate_limited"),
        ("WAF_FILTERED", "429", "rate_limited"),
    ],
)
def test_what_the_gateway_refuses_before_compute_gets_the_standard_error_body(
    response_type: str, status: str, code: str
) -> None:
    (response,) = [
        r for r in _of_type("AWS::ApiGateway::GatewayResponse").values()
        if r["Properties"]["ResponseType"] == response_type
    ]  # fmt: skip
    assert response["Condition"] == "HasRestApi"
    props = response["Properties"]
    assert props["StatusCode"] == status
    body = json.loads(props["ResponseTemplates"]["application/json"].replace("$context.requestId", "req-1"))
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == "req-1"
    assert set(body["error"]) == {"code", "message", "request_id"}


def test_the_waf_limits_each_ip_and_each_bearer_token_and_is_optional_per_stage() -> None:
    limits = TEMPLATE["Mappings"]["StageLimits"]
    assert limits["dev"]["WafEnabled"] == "false"  # off in dev by default
    assert limits["prod"]["WafEnabled"] == "true"
    assert TEMPLATE["Parameters"]["Waf"]["AllowedValues"] == ["stage-default", "on", "off"]
    acl = RESOURCES["RestWebAcl"]
    assert acl["Condition"] == "WafOn"
    props = acl["Properties"]
    assert props["Scope"] == "REGIONAL"
    assert props["DefaultAction"] == {"Allow": {}}
    rules = {rule["Name"]: rule for rule in props["Rules"]}
    assert set(rules) == {"per-ip-rate", "per-token-rate"}
    for rule in rules.values():
        assert rule["Action"] == {"Block": {}}
        statement = rule["Statement"]["RateBasedStatement"]
        assert statement["EvaluationWindowSec"] == 300
        assert rule["VisibilityConfig"]["SampledRequestsEnabled"] is False  # samples would keep tokens
    per_ip = rules["per-ip-rate"]["Statement"]["RateBasedStatement"]
    assert per_ip["AggregateKeyType"] == "IP"
    assert per_ip["Limit"] == {"Fn::FindInMap": ["StageLimits", {"Ref": "Stage"}, "WafPerIpLimit"]}
    per_token = rules["per-token-rate"]["Statement"]["RateBasedStatement"]
    assert per_token["AggregateKeyType"] == "CUSTOM_KEYS"
    assert per_token["CustomKeys"][0]["Header"]["Name"] == "authorization"
    association = RESOURCES["RestWebAclAssociation"]
    assert association["Condition"] == "WafOnRestApi"
    assert "/restapis/${RestApiId}/stages/${Stage}" in association["Properties"]["ResourceArn"]["Fn::Sub"]
    for stage in ("dev", "prod"):
        assert 10 <= limits[stage]["WafPerTokenLimit"] <= limits[stage]["WafPerIpLimit"]


def test_access_log_groups_keep_the_stages_retention() -> None:
    limits = TEMPLATE["Mappings"]["StageLimits"]
    assert limits["dev"]["LogRetentionDays"] < limits["prod"]["LogRetentionDays"]
    for logical_id in ("RestAccessLogGroup", "WebSocketAccessLogGroup"):
        props = RESOURCES[logical_id]["Properties"]
        assert props["RetentionInDays"] == {"Fn::FindInMap": ["StageLimits", {"Ref": "Stage"}, "LogRetentionDays"]}
        output = TEMPLATE["Outputs"][f"{logical_id}Arn"]["Value"]["Fn::Sub"]
        assert output.endswith(f"log-group:${{{logical_id}}}")  # no ":*": API Gateway's destination form
    # API Gateway writes access logs through one account-wide role: created here unless one is given.
    assert RESOURCES["ApiGatewayAccount"]["Condition"] == "CreateApiGatewayLogsRole"
    assert RESOURCES["ApiGatewayAccount"]["Properties"]["CloudWatchRoleArn"] == {
        "Fn::GetAtt": ["ApiGatewayLogsRole", "Arn"]
    }


def test_every_stage_has_limits() -> None:
    stages = TEMPLATE["Parameters"]["Stage"]["AllowedValues"]
    limits = TEMPLATE["Mappings"]["StageLimits"]
    assert set(limits) == set(stages)
    keys = set(limits["prod"])
    for stage in stages:
        assert set(limits[stage]) == keys, stage
