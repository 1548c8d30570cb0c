"""Least privilege per function: each deployed function's IAM policy grants exactly the AWS actions its
code path calls, on the stack's resources it touches, and nothing else.

The derivation reads the code: every adapter method's boto3 operations are found in its AST (the
DynamoDB adapters' ``self._call("put_item", TableName=self._connections, ...)``, the broadcaster's
``self._client.post_to_connection``, ...), following ``self.<helper>`` calls down to the base class, and
mapped to IAM actions. What each function calls on the adapters is declared below (FUNCTION_CALLS), one
line per port method with the code path that calls it, and each declared method must exist on its
adapter. A new boto3 call in any adapter method a function uses fails this test until that function's
policy grants it; a policy action no declared code path calls fails it too.

The stage's secrets are read at cold start by every function whose environment names them
(chalicelib/adapters/secrets.py), so the Secrets statement is checked against the environment, after
infra/deploy.py has dropped the secrets a function's rendered environment does not name."""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from infra import deploy

REPO_ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = REPO_ROOT / "chalicelib" / "adapters"

# boto3 operation → the IAM action that authorises it.
OPERATION_ACTIONS = {
    "get_item": "dynamodb:GetItem",
    "put_item": "dynamodb:PutItem",
    "update_item": "dynamodb:UpdateItem",
    "delete_item": "dynamodb:DeleteItem",
    "query": "dynamodb:Query",
    "scan": "dynamodb:Scan",
    "batch_get_item": "dynamodb:BatchGetItem",
    "batch_write_item": "dynamodb:BatchWriteItem",
    "transact_write_items": "dynamodb:TransactWriteItems",
    "transact_get_items": "dynamodb:TransactGetItems",
    "get_secret_value": "secretsmanager:GetSecretValue",
    "invoke": "lambda:InvokeFunction",
    # The management API: one IAM action, told apart by the method in the resource ARN.
    "post_to_connection": "execute-api:ManageConnections POST",
    "delete_connection": "execute-api:ManageConnections DELETE",
    "get_connection": "execute-api:ManageConnections GET",
}
# Attributes of the DynamoDB adapters holding a table name → the stack output of that table's ARN.
TABLE_ATTRIBUTES = {
    ("DynamoDBConnectionStore", "_connections"): "ConnectionsTableArn",
    ("DynamoDBConnectionStore", "_subscriptions"): "SubscriptionsTableArn",
    ("DynamoDBConnectionStore", "_registry"): "RegistryTableArn",
    ("DynamoDBJobRunStore", "_table"): "JobRunsTableArn",
}
ADAPTER_FILES = {
    "DynamoDBConnectionStore": "dynamodb_connections.py",
    "RegistryTable": "dynamodb_registry.py",
    "DynamoDBJobRunStore": "dynamodb_job_runs.py",
    "DynamoDBAdapter": "dynamodb_support.py",
    "ApiGatewayBroadcaster": "apigw_broadcaster.py",
    "LambdaShardDispatcher": "lambda_dispatcher.py",
}
BASES = {
    "DynamoDBConnectionStore": "RegistryTable",
    "RegistryTable": "DynamoDBAdapter",
    "DynamoDBJobRunStore": "DynamoDBAdapter",
}
_SDK_HELPERS = {"_call", "_call_if", "_paginate"}

# The jobs (six @app.schedule functions sharing one policy): chalicelib/services/jobs.py.
_JOB_CALLS = {
    "DynamoDBJobRunStore.start": "JobsService.run: the run's record (a duplicate delivery is refused)",
    "DynamoDBJobRunStore.get": "JobsService._duplicate: a duplicate delivery answers the existing run",
    "DynamoDBJobRunStore.finish": "JobsService._finish",
    "DynamoDBJobRunStore.delete_expired": "cleanup",
    "DynamoDBConnectionStore.subscribed_topics": "refresh_quotes: the subscribed symbols",
    "DynamoDBConnectionStore.topic_registry": "StreamingService.publish: shards with subscribers",
    "DynamoDBConnectionStore.connections_in_shard": "StreamingService._deliver: inline delivery when an invoke fails",
    "DynamoDBConnectionStore.remove_connection": "StreamingService._deliver: a 410 while delivering inline",
    "DynamoDBConnectionStore.delete_expired": "cleanup",
    "DynamoDBConnectionStore.repair_registry": "cleanup",
    "LambdaShardDispatcher.dispatch": "StreamingService.publish: one fanout_worker invoke per shard",
    "ApiGatewayBroadcaster.send_many": "StreamingService._deliver (inline delivery)",
}
# Chalice function name → {adapter method: the code path that calls it}.
FUNCTION_CALLS: dict[str, dict[str, str]] = {
    "api_handler": {
        "DynamoDBConnectionStore.stats": "GET /ws/stats",
        "DynamoDBJobRunStore.recent": "GET /jobs/status",
        # POST /jobs/{job_name}/run runs the job inside the REST function (JobsService.run), so the
        # REST policy holds every job's calls too. Moving the manual run to an invoke of the job's own
        # function would shrink it to the two reads above plus lambda:InvokeFunction.
        **_JOB_CALLS,
    },
    "jwt_authorizer": {},  # verifies the token only: the JWT secret (dev) or the JWKS URL (prod, https)
    "websocket_connect": {"DynamoDBConnectionStore.add_connection": "StreamingService.connect"},
    "websocket_message": {
        "DynamoDBConnectionStore.get_connection": "StreamingService._replies",
        "DynamoDBConnectionStore.add_subscriptions": "subscribe",
        "DynamoDBConnectionStore.remove_subscriptions": "unsubscribe",
        "DynamoDBConnectionStore.remove_connection": "a 410 on the reply",
        "DynamoDBConnectionStore.connections_of_user": "the per-user symbol cap",
        "ApiGatewayBroadcaster.send": "acks, snapshots, pong, errors",
        "ApiGatewayBroadcaster.close": "over its message budget, or its token expired",
    },
    "websocket_disconnect": {"DynamoDBConnectionStore.remove_connection": "StreamingService.disconnect"},
    "fanout_worker": {
        "DynamoDBConnectionStore.connections_in_shard": "StreamingService._deliver",
        "DynamoDBConnectionStore.remove_connection": "a 410 while delivering",
        "ApiGatewayBroadcaster.send_many": "StreamingService._deliver",
        "ApiGatewayBroadcaster.close": "a connection whose token expired",
    },
    **{job: dict(_JOB_CALLS) for job in deploy.JOB_FUNCTIONS},
}
# Statements the platform needs whatever the code does (Lambda writes the logs, manages the VPC ENIs,
# sends the traces, and delivers a failed async event to the on-failure destination with the
# function's own role).
PLATFORM_SIDS = {
    "Logs",
    "VpcNetworkInterfacesAwsAllowsNoNarrowerResource",
    "TracingAwsAllowsNoNarrowerResource",
    "FanoutFailureDestination",
}


IDENTITY = {
    "JwtIssuer": "https://idp.example.com/",
    "JwtAudience": "market-data-api",
    "CorsAllowedOrigins": "https://dashboard.example.com",
    "JwtJwksUrl": "https://idp.example.com/.well-known/jwks.json",
}


@dataclass
class Access:
    actions: set[str] = field(default_factory=set)
    tables: set[str] = field(default_factory=set)  # stack outputs of the tables' ARNs
    indexed: set[str] = field(default_factory=set)  # tables queried through an index


def _methods() -> dict[str, dict[str, ast.FunctionDef]]:
    found: dict[str, dict[str, ast.FunctionDef]] = {}
    for class_name, filename in ADAPTER_FILES.items():
        tree = ast.parse((ADAPTERS / filename).read_text())
        (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
        found[class_name] = {f.name: f for f in node.body if isinstance(f, ast.FunctionDef)}
    return found


METHODS = _methods()


def _lookup(class_name: str, method: str) -> tuple[str, ast.FunctionDef] | None:
    current: str | None = class_name
    while current is not None:
        if method in METHODS[current]:
            return current, METHODS[current][method]
        current = BASES.get(current)
    return None


def _self_attributes(node: ast.AST) -> Iterator[str]:
    for child in ast.walk(node):
        if isinstance(child, ast.Attribute) and isinstance(child.value, ast.Name) and child.value.id == "self":
            yield child.attr


def _table_of(class_name: str, node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return TABLE_ATTRIBUTES.get((class_name, node.attr))
    return None


def access_of(class_name: str, method: str) -> Access:
    """Every AWS action ``class_name.method`` can make, through the helpers it calls on ``self``."""
    access = Access()
    seen: set[tuple[str, str]] = set()
    pending = [method]
    while pending:
        name = pending.pop()
        found = _lookup(class_name, name)
        if found is None or (found[0], name) in seen:
            continue
        seen.add((found[0], name))
        body = found[1]
        for attribute in _self_attributes(body):  # helpers, called or passed on (self._parallel(self._bump, ...))
            if attribute not in _SDK_HELPERS and _lookup(class_name, attribute) is not None:
                pending.append(attribute)
            access.tables.update(t for (c, a), t in TABLE_ATTRIBUTES.items() if c == class_name and a == attribute)
        for node in ast.walk(body):
            if not isinstance(node, ast.Call):
                continue
            operation = None
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr in _SDK_HELPERS and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    operation = first.value
                keywords = {k.arg: k.value for k in node.keywords}
                table = _table_of(class_name, keywords.get("TableName", ast.Constant(None)))
                if operation == "query" and "IndexName" in keywords and table is not None:
                    access.indexed.add(table)
            if isinstance(func, ast.Attribute) and func.attr == "_query_live" and node.args:
                # DynamoDBAdapter._query_live(self.<table>, ..., index=...): a Query through that table's index
                table = _table_of(class_name, node.args[0])
                if table is not None and any(k.arg == "index" for k in node.keywords):
                    access.indexed.add(table)
            if operation is not None:
                assert operation in OPERATION_ACTIONS, (
                    f"{class_name}.{name} calls {operation}: map it to its IAM action"
                )
                access.actions.add(OPERATION_ACTIONS[operation])
        # Direct client calls and client methods handed to a retry helper: self._client.post_to_connection
        for child in ast.walk(body):
            if (
                isinstance(child, ast.Attribute)
                and isinstance(child.value, ast.Attribute)
                and child.value.attr == "_client"
                and child.attr in OPERATION_ACTIONS
            ):
                access.actions.add(OPERATION_ACTIONS[child.attr])
    return access


def expected_access(function: str) -> Access:
    total = Access()
    for qualified in FUNCTION_CALLS[function]:
        class_name, method = qualified.split(".")
        assert _lookup(class_name, method) is not None, f"{function}: {qualified} does not exist"
        access = access_of(class_name, method)
        total.actions |= access.actions
        total.tables |= access.tables
        total.indexed |= access.indexed
    return total


@functools.cache
def _rendered(stage: str) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    """function → (its rendered policy, its rendered environment), as infra/deploy.py writes them."""
    outputs = {name: f"<{name}>" for name in deploy.template_outputs()}
    values = deploy.deploy_values(stage, "us-east-1", "111122223333", "wsapi12345", IDENTITY)
    return deploy.function_policies(stage, outputs, values)


def _granted(policy: dict[str, Any]) -> Access:
    granted = Access()
    for statement in policy["Statement"]:
        if statement["Sid"] in PLATFORM_SIDS or statement["Sid"] == "Secrets":
            continue
        for action in statement["Action"]:
            if action == "execute-api:ManageConnections":
                for resource in statement["Resource"]:
                    granted.actions.add(f"{action} {resource.split('/')[2]}")
            else:
                granted.actions.add(action)
        if statement["Sid"] == "Tables":
            for resource in statement["Resource"]:
                output = resource.strip("<>").split(">")[0]
                if resource.endswith("/index/*"):
                    granted.indexed.add(output)
                else:
                    granted.tables.add(output)
    return granted


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
@pytest.mark.parametrize("function", sorted(FUNCTION_CALLS))
def test_each_function_is_granted_exactly_what_its_code_path_calls(stage: str, function: str) -> None:
    policy, _ = _rendered(stage)[function]
    granted, expected = _granted(policy), expected_access(function)
    assert granted.actions == expected.actions, (
        f"{function}: granted but never called {sorted(granted.actions - expected.actions)}; "
        f"called but not granted {sorted(expected.actions - granted.actions)}"
    )
    assert granted.tables == expected.tables, function
    assert granted.indexed == expected.indexed, function


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
def test_every_deployed_function_has_a_policy_and_the_test_knows_its_code_path(stage: str) -> None:
    assert set(_rendered(stage)) == set(FUNCTION_CALLS)


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
@pytest.mark.parametrize("function", sorted(FUNCTION_CALLS))
def test_a_function_reads_exactly_the_secrets_its_environment_names(stage: str, function: str) -> None:
    policy, environment = _rendered(stage)[function]
    statements = [s for s in policy["Statement"] if s["Sid"] == "Secrets"]
    named = {v for k, v in environment.items() if k.endswith("_SECRET_ARN") and v}
    granted = {r for s in statements for r in s["Resource"]}
    assert granted == named
    for statement in statements:
        assert statement["Action"] == ["secretsmanager:GetSecretValue"]


def test_prod_verifies_rs256_and_no_function_can_read_the_hs256_secret() -> None:
    for function, (policy, environment) in _rendered("prod").items():
        assert "JWT_SECRET_ARN" not in environment, function
        assert "<JwtSecretArn>" not in json.dumps(policy), function


def test_the_authorizer_reads_only_the_jwt_secret_and_runs_outside_the_vpc() -> None:
    policy, environment = _rendered("dev")["jwt_authorizer"]
    assert {s["Sid"] for s in policy["Statement"]} == {"Secrets", "Logs", "TracingAwsAllowsNoNarrowerResource"}
    assert [r for s in policy["Statement"] if s["Sid"] == "Secrets" for r in s["Resource"]] == ["<JwtSecretArn>"]
    assert not environment.get("REDIS_AUTH_SECRET_ARN")
    assert not environment.get("PROVIDER_KEYS_SECRET_ARN")


@pytest.mark.parametrize("function", sorted(FUNCTION_CALLS))
def test_dev_and_prod_policies_differ_only_in_resource_names(function: str) -> None:
    """The same statements and actions; resources are the stage's own (and prod has no HS256 secret)."""
    dev, _ = _rendered("dev")[function]
    prod, _ = _rendered("prod")[function]
    shape = [(s["Sid"], s["Action"]) for s in dev["Statement"] if s["Sid"] != "Secrets"]
    assert shape == [(s["Sid"], s["Action"]) for s in prod["Statement"] if s["Sid"] != "Secrets"]
    for statement in prod["Statement"]:
        for resource in statement["Resource"]:
            assert ":dev" not in resource, resource
            assert "-dev-" not in resource, resource


@pytest.mark.parametrize("stage", deploy.DEPLOYABLE_STAGES)
@pytest.mark.parametrize("function", sorted(FUNCTION_CALLS))
def test_logs_go_to_the_functions_own_log_group_only(stage: str, function: str) -> None:
    policy, _ = _rendered(stage)[function]
    (logs,) = [s for s in policy["Statement"] if s["Sid"] == "Logs"]
    assert sorted(logs["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    name = deploy.lambda_function_name(stage, function)
    assert f"arn:aws:logs:us-east-1:111122223333:log-group:/aws/lambda/{name}:*" in logs["Resource"]
    for resource in logs["Resource"]:
        assert "*" not in resource.removesuffix(":*"), resource


def test_the_derivation_sees_a_call_it_was_not_told_about() -> None:
    """The AST reading itself: a store method's helpers are followed (remove_connection reaches the
    registry's conditional decrements and the slot release through private helpers)."""
    removal = access_of("DynamoDBConnectionStore", "remove_connection")
    assert {"dynamodb:DeleteItem", "dynamodb:UpdateItem"} <= removal.actions
    assert {"ConnectionsTableArn", "RegistryTableArn"} <= removal.tables
    assert access_of("ApiGatewayBroadcaster", "send_many").actions == {"execute-api:ManageConnections POST"}
    assert access_of("LambdaShardDispatcher", "dispatch").actions == {"lambda:InvokeFunction"}
