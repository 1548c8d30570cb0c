"""The rehearsal-only transform: what changes between the template `make deploy` ships and the one the
emulator (ministack) gets. Everything here is a documented, minimal difference; nothing else changes.

Each change is either a DROP (a resource the emulator cannot create, named with the reason, so the
comparison of the emulator's stack with the merged template knows exactly what to leave out) or an
ENVIRONMENT change of the functions (what has no equivalent offline). README "Deploy rehearsal" lists
the same items.

Drops (ministack 1.5.x has no provisioner for these types; its CloudFormation fails a stack that uses
one, it does not skip it):
- ``AWS::EC2::NatGateway`` and ``AWS::EC2::EIP``, and the ``AWS::EC2::Route`` entries through the NAT
  gateway: there is no egress to rehearse offline (the providers are served locally, below).
- ``AWS::WAFv2::WebACLAssociation``: the web ACL itself is created; only its association is dropped.
- ``AWS::CloudWatch::Alarm`` with metric math (``Metrics``): ministack creates single-metric alarms
  only; the static gates (cfn-lint, checkov) still check these.
- ``AWS::ApiGatewayV2::Deployment``: replaced by ``AutoDeploy: true`` on the WebSocket stage (the same
  routes are published; ministack serves a stage's routes without a deployment resource).

Emulator gap worked around: ministack's ``Ref`` of an ``AWS::SecretsManager::Secret`` yields the
secret's name where AWS yields its ARN (the functions' *_SECRET_ARN settings require an ARN). Every
such ``Ref`` becomes ``Fn::GetAtt <Secret>.Id``, which is the ARN on AWS and in ministack alike.

Environment of every function (rehearsal-only settings, refused by chalicelib/settings.py in the real
stages, as replay is):
- ``MARKET_DATA_SOURCE=rehearsal`` and ``REHEARSAL_PROVIDER_URL``: the providers' HTTP requests go to
  a local server that answers them from the replay data (no network offline). Settings accept it only
  when the SDK's endpoint is an emulator on this machine (``AWS_ENDPOINT_URL`` on 127.0.0.1, which
  ministack sets for every function it runs): never on AWS. STAGE stays the deployed stage's, so its
  identity checks (issuer, audience, https origins) run as deployed.
- ``REDIS_URL`` scheme ``rediss`` → ``redis`` and no ``REDIS_AUTH_SECRET_ARN``: the emulator's
  ElastiCache is a local Redis without TLS, and the functions refuse an AUTH token over plain TCP
  (the stack's AUTH secret is still created).
- ``WEBSOCKET_MANAGEMENT_ENDPOINT``: the emulator's @connections URL instead of execute-api on AWS.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DROPPED_TYPES: dict[str, str] = {
    "AWS::EC2::NatGateway": "ministack has no NAT gateway; no egress offline",
    "AWS::EC2::EIP": "ministack has no Elastic IP (the NAT gateway's address)",
    "AWS::WAFv2::WebACLAssociation": "ministack has no WAF association (the web ACL is created)",
    "AWS::ApiGatewayV2::Deployment": "ministack has no ApiGatewayV2 deployment: the stage gets AutoDeploy",
}
NAT_ROUTE_REASON = "a route through the dropped NAT gateway"
METRIC_MATH_REASON = "ministack has no metric-math alarm (Metrics); single-metric alarms are created"
REHEARSAL_SOURCE = "rehearsal"
SERVERLESS_FUNCTION = "AWS::Serverless::Function"
LAMBDA_FUNCTION = "AWS::Lambda::Function"


@dataclass(frozen=True)
class Drop:
    logical_id: str
    resource_type: str
    reason: str


@dataclass(frozen=True)
class RehearsalSettings:
    provider_url: str  # the local server answering provider requests from the replay data
    gateway_url: str  # the emulator's endpoint, e.g. http://127.0.0.1:4566


def _refers_to(value: Any, logical_ids: set[str]) -> bool:
    """Whether a template fragment refers (Ref, GetAtt, Sub, DependsOn) to one of ``logical_ids``."""
    if isinstance(value, dict):
        if value.get("Ref") in logical_ids:
            return True
        attribute = value.get("Fn::GetAtt")
        if isinstance(attribute, list) and attribute and attribute[0] in logical_ids:
            return True
        if isinstance(attribute, str) and attribute.split(".", 1)[0] in logical_ids:
            return True
        return any(_refers_to(item, logical_ids) for item in value.values())
    if isinstance(value, list):
        return any(_refers_to(item, logical_ids) for item in value)
    if isinstance(value, str):
        return any(f"${{{logical_id}" in value for logical_id in logical_ids)
    return False


def drops(template: Mapping[str, Any]) -> list[Drop]:
    """What the rehearsal leaves out of ``template``, each with its reason."""
    resources: Mapping[str, Any] = template.get("Resources", {})
    dropped = [
        Drop(logical_id, resource["Type"], DROPPED_TYPES[resource["Type"]])
        for logical_id, resource in resources.items()
        if resource.get("Type") in DROPPED_TYPES
    ]
    dropped += [
        Drop(logical_id, resource["Type"], METRIC_MATH_REASON)
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::CloudWatch::Alarm" and "Metrics" in resource.get("Properties", {})
    ]
    nat = {d.logical_id for d in dropped if d.resource_type == "AWS::EC2::NatGateway"}
    dropped += [
        Drop(logical_id, resource["Type"], NAT_ROUTE_REASON)
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::EC2::Route" and _refers_to(resource.get("Properties", {}), nat)
    ]
    return dropped


def _function_environment(resource: dict[str, Any]) -> dict[str, Any] | None:
    properties = resource.setdefault("Properties", {})
    environment = properties.get("Environment", {}).get("Variables")
    return environment if isinstance(environment, dict) else None


def _websocket_api(resources: Mapping[str, Any]) -> str | None:
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource.get("Type") == "AWS::ApiGatewayV2::Api" and properties.get("ProtocolType") == "WEBSOCKET":
            return logical_id
    return None


def _websocket_stage_name(resources: Mapping[str, Any]) -> Any:
    for resource in resources.values():
        if resource.get("Type") == "AWS::ApiGatewayV2::Stage":
            return resource.get("Properties", {}).get("StageName")
    return None


def _rediss_to_redis(value: Any) -> Any:
    """The same REDIS_URL value (a string or an Fn::Sub/Join) with the scheme rediss:// → redis://."""
    if isinstance(value, str):
        return "redis://" + value.removeprefix("rediss://") if value.startswith("rediss://") else value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        if isinstance(sub, list):
            return {"Fn::Sub": [_rediss_to_redis(sub[0]), *sub[1:]]}
        return {"Fn::Sub": _rediss_to_redis(sub)}
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return {"Fn::Join": [separator, [_rediss_to_redis(parts[0]), *parts[1:]] if parts else parts]}
    return value


def _secret_refs_to_arns(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        if len(value) == 1 and value.get("Ref") in secrets:
            return {"Fn::GetAtt": [value["Ref"], "Id"]}
        if "Fn::Sub" in value:
            sub = value["Fn::Sub"]
            template, variables = (sub[0], sub[1]) if isinstance(sub, list) else (sub, None)
            for secret in secrets:
                template = template.replace(f"${{{secret}}}", f"${{{secret}.Id}}")
            rewritten = _secret_refs_to_arns(variables, secrets) if variables is not None else None
            return {"Fn::Sub": [template, rewritten] if variables is not None else template}
        return {key: _secret_refs_to_arns(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_secret_refs_to_arns(item, secrets) for item in value]
    return value


def rehearsal_template(template: Mapping[str, Any], settings: RehearsalSettings) -> dict[str, Any]:
    """``template`` (the merged one `make deploy` ships) changed only as this module's docstring says."""
    result = copy.deepcopy(dict(template))
    resources: dict[str, Any] = result["Resources"]
    dropped = {d.logical_id for d in drops(template)}
    for logical_id in dropped:
        del resources[logical_id]
    for resource in resources.values():
        depends = resource.get("DependsOn")
        if isinstance(depends, list):
            kept = [name for name in depends if name not in dropped]
            if kept:
                resource["DependsOn"] = kept
            else:
                del resource["DependsOn"]
        elif isinstance(depends, str) and depends in dropped:
            del resource["DependsOn"]
        if resource.get("Type") == "AWS::ApiGatewayV2::Stage":
            properties = resource.setdefault("Properties", {})
            if _refers_to(properties.get("DeploymentId"), dropped):
                del properties["DeploymentId"]
                properties["AutoDeploy"] = True
    secrets = {k for k, v in resources.items() if v.get("Type") == "AWS::SecretsManager::Secret"}
    result["Resources"] = resources = _secret_refs_to_arns(resources, secrets)
    if "Outputs" in result:
        result["Outputs"] = _secret_refs_to_arns(result["Outputs"], secrets)
    websocket_api = _websocket_api(resources)
    stage_name = _websocket_stage_name(resources)
    for resource in resources.values():
        if resource.get("Type") not in (SERVERLESS_FUNCTION, LAMBDA_FUNCTION):
            continue
        environment = _function_environment(resource)
        if environment is None:
            continue
        environment["MARKET_DATA_SOURCE"] = REHEARSAL_SOURCE
        environment["REHEARSAL_PROVIDER_URL"] = settings.provider_url
        if "REDIS_URL" in environment:
            environment["REDIS_URL"] = _rediss_to_redis(environment["REDIS_URL"])
            environment.pop("REDIS_AUTH_SECRET_ARN", None)
        if "WEBSOCKET_MANAGEMENT_ENDPOINT" in environment and websocket_api is not None:
            stage = stage_name if isinstance(stage_name, str) else "${Stage}"
            environment["WEBSOCKET_MANAGEMENT_ENDPOINT"] = {
                "Fn::Sub": f"{settings.gateway_url}/_aws/execute-api/${{{websocket_api}}}/{stage}"
            }
    for output in list(result.get("Outputs", {})):
        if _refers_to(result["Outputs"][output], dropped):
            del result["Outputs"][output]
    return result


def expected_resources(template: Mapping[str, Any], conditions: Mapping[str, bool] | None = None) -> dict[str, str]:
    """logical id → type of what the emulator's stack must hold: the template's resources minus the
    drops and minus those whose Condition is false (``conditions``: the resolved values)."""
    dropped = {d.logical_id for d in drops(template)}
    resolved = conditions or {}
    return {
        logical_id: resource["Type"]
        for logical_id, resource in template.get("Resources", {}).items()
        if logical_id not in dropped and resolved.get(resource.get("Condition", ""), True)
    }
