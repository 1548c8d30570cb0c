"""DynamoDB tables for the local stack and the tests, read from infra/template.yaml.

The CloudFormation template is the single source of truth for table names, keys, GSIs and TTL
attributes; moto's tables are created from it so local and deployed definitions cannot drift.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "template.yaml"

# Short-form tag → long-form key. `!GetAtt A.b` is the one tag whose long form is not its scalar as is.
_INTRINSICS: dict[str, str] = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "Sub",
            "GetAtt",
            "If",
            "Equals",
            "Select",
            "Join",
            "Split",
            "FindInMap",
            "GetAZs",
            "ImportValue",
            "Base64",
            "Cidr",
            "Not",
            "And",
            "Or",
        )
    },
}

# create_table accepts only these keys of a CloudFormation index definition (CFN also allows e.g.
# ContributorInsightsSpecification, which the DynamoDB API rejects).
_GSI_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
_LSI_KEYS = ("IndexName", "KeySchema", "Projection")
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation's short-form tags (`!Sub`, `!Ref`, …) into long form."""


def _intrinsic_constructor(key: str) -> Callable[[yaml.SafeLoader, yaml.Node], dict[str, Any]]:
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if key == "Fn::GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:
            raise yaml.constructor.ConstructorError(None, None, f"unexpected node for {key}", node.start_mark)
        return {key: value}

    return construct


for _tag, _key in _INTRINSICS.items():
    CloudFormationLoader.add_constructor(f"!{_tag}", _intrinsic_constructor(_key))


@dataclass(frozen=True)
class TableDefinition:
    logical_id: str
    create_kwargs: dict[str, Any]
    ttl_attribute: str | None

    @property
    def table_name(self) -> str:
        return str(self.create_kwargs["TableName"])


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        template = yaml.load(handle, Loader=CloudFormationLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(template, dict):
        raise ValueError(f"{path}: not a CloudFormation template")
    return template


def table_definitions(stage: str, template: Mapping[str, Any] | None = None) -> list[TableDefinition]:
    """create_table kwargs and TTL attribute of every AWS::DynamoDB::Table in the template."""
    template = load_template() if template is None else template
    _check_stage(template, stage)
    parameters = {"Stage": stage}
    definitions = []
    for logical_id, resource in template.get("Resources", {}).items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        props = resource["Properties"]
        kwargs: dict[str, Any] = {
            "TableName": _resolve(props["TableName"], parameters),
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            # CloudFormation's default billing mode is PROVISIONED, which then needs ProvisionedThroughput.
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if "ProvisionedThroughput" in props:
            kwargs["ProvisionedThroughput"] = props["ProvisionedThroughput"]
        if "GlobalSecondaryIndexes" in props:
            kwargs["GlobalSecondaryIndexes"] = [_pick(index, _GSI_KEYS) for index in props["GlobalSecondaryIndexes"]]
        if "LocalSecondaryIndexes" in props:
            kwargs["LocalSecondaryIndexes"] = [_pick(index, _LSI_KEYS) for index in props["LocalSecondaryIndexes"]]
        ttl = props.get("TimeToLiveSpecification") or {}
        ttl_attribute = ttl.get("AttributeName") if ttl.get("Enabled") else None
        definitions.append(TableDefinition(logical_id, kwargs, ttl_attribute))
    return definitions


def create_tables(dynamodb_client: Any, stage: str) -> list[str]:
    """Create the template's tables (existing ones are left alone), wait until ACTIVE, enable TTL.

    `dynamodb_client` is a boto3 DynamoDB client (botocore clients are untyped, hence Any).
    """
    definitions = table_definitions(stage)
    existing = _existing_tables(dynamodb_client)
    for definition in definitions:
        if definition.table_name not in existing:
            # ResourceInUse: created concurrently by another process, which is the outcome we wanted.
            with contextlib.suppress(dynamodb_client.exceptions.ResourceInUseException):
                dynamodb_client.create_table(**definition.create_kwargs)
    waiter = dynamodb_client.get_waiter("table_exists")
    for definition in definitions:
        waiter.wait(TableName=definition.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        if definition.ttl_attribute is not None:
            _enable_ttl(dynamodb_client, definition.table_name, definition.ttl_attribute)
    return [definition.table_name for definition in definitions]


def _enable_ttl(dynamodb_client: Any, table_name: str, attribute: str) -> None:
    # update_time_to_live fails with "TimeToLive is already enabled" on AWS, so look first.
    current = dynamodb_client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") and current.get("AttributeName") == attribute:
        return
    dynamodb_client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
    )


def _existing_tables(dynamodb_client: Any) -> set[str]:
    names: set[str] = set()
    for page in dynamodb_client.get_paginator("list_tables").paginate():
        names.update(page["TableNames"])
    return names


def _check_stage(template: Mapping[str, Any], stage: str) -> None:
    allowed = template.get("Parameters", {}).get("Stage", {}).get("AllowedValues")
    if allowed is not None and stage not in allowed:
        raise ValueError(f"stage {stage!r} is not one of the template's Stage values {allowed}")


def _resolve(value: Any, parameters: Mapping[str, str]) -> str:
    """Resolve the intrinsics a table name can use here: a literal, Ref to a parameter, or Fn::Sub."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return _parameter(value["Ref"], parameters)
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        sub = value["Fn::Sub"]
        text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])
        scope = {**parameters, **{name: _resolve(v, parameters) for name, v in variables.items()}}
        substituted = _SUB_VARIABLE.sub(lambda m: _parameter(m.group(1), scope), text)
        return substituted.replace("${!", "${")  # `${!Literal}` is Fn::Sub's escape for a literal `${`
    raise ValueError(f"unsupported intrinsic in a table name: {value!r}")


def _parameter(name: str, parameters: Mapping[str, str]) -> str:
    try:
        return parameters[name]
    except KeyError:
        raise ValueError(f"template refers to {name!r}, which the local stack does not define") from None


def _pick(mapping: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: mapping[key] for key in keys if key in mapping}
