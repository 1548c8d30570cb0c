"""`make deploy STAGE=dev|prod` and `make destroy STAGE=...`: the packaged path (infra/package.py's artifacts).

deploy, in order:
1. Check the stage's identity settings as the functions will at cold start (infra/deploy.py's check):
   nothing is uploaded for a stage that would refuse every token.
2. Upload every artifact sam.json names (the function zip, the layer zips) and the template itself to the
   stage's artifact bucket (created if missing, public access blocked), content-addressed
   (``package/<name>-<sha256>.zip``: an unchanged file is not uploaded again, a changed one gets a new
   key, so CloudFormation sees exactly which code changed), and point the template's ``CodeUri`` /
   ``ContentUri`` at those S3 copies. Nothing is rebuilt: what `make package` wrote is what deploys.
3. Create a change set on stack ``market-data-<stage>`` (CREATE for a new stack, or one an earlier
   ``--no-execute`` left in REVIEW_IN_PROGRESS; UPDATE otherwise) and print its changes. With
   ``--no-execute`` it stops here: the change set waits in the console / CLI for review.
4. Execute it, wait for the stack, print its outputs (the REST URL, the WebSocket URL, ...).

destroy: delete the stack and wait (the tables' point-in-time recovery and the secrets' recovery window
still apply), then empty and delete the artifact bucket.

`deploy_package` takes a boto3 session and an endpoint URL, so an emulator can stand in for AWS.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import deploy, package
from infra.layer import build

STACK_PREFIX = deploy.STACK_PREFIX
ARTIFACT_PREFIX = "package"
# CloudFormation takes a template body of at most 51,200 bytes; larger ones go through S3 (TemplateURL).
TEMPLATE_BODY_LIMIT = 51_200
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]  # roles, the SAM transform
# Resource types whose property names a local artifact, and that property.
ARTIFACT_PROPERTIES = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}
_NO_CHANGES = ("didn't contain changes", "No updates are to be performed", "submitted information didn't contain")
_REVIEW = "REVIEW_IN_PROGRESS"


class ReleaseError(Exception):
    """The artifacts cannot be deployed as asked (missing files, a stack in a state needing a human)."""


@dataclass
class Release:
    """What a deploy did: the stack, its change set and changes, whether it ran, the stack's outputs."""

    stack: str
    bucket: str
    change_set_id: str | None
    change_set_type: str
    changes: list[dict[str, Any]] = field(default_factory=list)
    executed: bool = False
    outputs: dict[str, str] = field(default_factory=dict)
    uploaded: dict[str, str] = field(default_factory=dict)  # artifact file name → s3:// URI


def stack_name(stage: str) -> str:
    return f"{STACK_PREFIX}-{stage}"


def artifact_bucket(stage: str, account: str, region: str) -> str:
    return f"{STACK_PREFIX}-{stage}-artifacts-{account}-{region}"


def artifact_key(path: Path) -> str:
    """Content-addressed: the same bytes, the same key."""
    return f"{ARTIFACT_PREFIX}/{path.stem}-{build.sha256_of(path)}{path.suffix}"


def local_artifacts(template: Mapping[str, Any], directory: Path) -> dict[str, Path]:
    """Every local file the template's functions and layers name (``./deployment.zip``): uri → path."""
    found: dict[str, Path] = {}
    for logical_id, resource in template["Resources"].items():
        prop = ARTIFACT_PROPERTIES.get(resource.get("Type", ""))
        if prop is None:
            continue
        uri = resource["Properties"][prop]
        if not isinstance(uri, str) or uri.startswith("s3://"):
            continue
        path = (directory / uri).resolve()
        if directory.resolve() not in path.parents or not path.is_file():
            raise ReleaseError(f"{logical_id}.{prop} names {uri!r}, which is not a file of {directory}")
        found[uri] = path
    return found


def _object_exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def upload_artifacts(
    s3: Any, bucket: str, template: Mapping[str, Any], directory: Path
) -> tuple[dict[str, Any], dict[str, str]]:
    """Upload the template's local artifacts (skipping keys already there) and return (the template
    pointing at their S3 copies, file name → s3:// URI). The template passed in is not changed."""
    rewritten = copy.deepcopy(dict(template))
    uris: dict[str, str] = {}
    for uri, path in sorted(local_artifacts(template, directory).items()):
        key = artifact_key(path)
        if not _object_exists(s3, bucket, key):
            s3.upload_file(str(path), bucket, key)
        uris[uri] = f"s3://{bucket}/{key}"
    for resource in rewritten["Resources"].values():
        prop = ARTIFACT_PROPERTIES.get(resource.get("Type", ""))
        if prop is not None and resource["Properties"][prop] in uris:
            resource["Properties"][prop] = uris[resource["Properties"][prop]]
    return rewritten, {Path(uri).name: s3_uri for uri, s3_uri in uris.items()}


def template_source(
    s3: Any, bucket: str, body: str, *, region: str, endpoint_url: str | None, transport: str = "auto"
) -> dict[str, str]:
    """``TemplateBody`` when it fits (or ``transport="body"``), else the template uploaded to the bucket
    (content-addressed) as ``TemplateURL``: virtual-hosted on AWS, path-style under an emulator's endpoint."""
    if transport == "body" or (transport == "auto" and len(body.encode()) <= TEMPLATE_BODY_LIMIT):
        return {"TemplateBody": body}
    key = f"{ARTIFACT_PREFIX}/sam-{hashlib.sha256(body.encode()).hexdigest()}.json"
    if not _object_exists(s3, bucket, key):
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    if endpoint_url:
        return {"TemplateURL": f"{endpoint_url.rstrip('/')}/{bucket}/{key}"}
    return {"TemplateURL": f"https://{bucket}.s3.{region}.amazonaws.com/{key}"}


def stack_parameters(
    template: Mapping[str, Any],
    *,
    identity: Mapping[str, str],
    alarm_email: str = "",
    waf: str = "stage-default",
    api_gateway_logs_role_arn: str = "",
) -> list[dict[str, str]]:
    """The stack's parameters: the identity settings the template declares (each required), and the
    operator's choices. The rest keep the template's defaults (Stage is fixed to the package's)."""
    declared = template.get("Parameters", {})
    values = {"AlarmEmail": alarm_email, "Waf": waf, "ApiGatewayLogsRoleArn": api_gateway_logs_role_arn}
    for name in package.IDENTITY_PARAMETERS:
        if name in declared:
            if not identity.get(name):
                raise ReleaseError(f"the template needs the {name} parameter")
            values[name] = identity[name]
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items() if k in declared]


def _stack_status(cloudformation: Any, stack: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return str(cloudformation.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"])
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise


def change_set_type(status: str | None) -> str:
    if status is None or status == _REVIEW:
        return "CREATE"  # no stack, or one an earlier --no-execute created and never executed
    if status == "ROLLBACK_COMPLETE":
        raise ReleaseError("the stack's first creation failed (ROLLBACK_COMPLETE): `make destroy`, then deploy again")
    if status.endswith("_IN_PROGRESS"):
        raise ReleaseError(f"the stack is busy ({status}): wait for it, then deploy again")
    return "UPDATE"


def _wait(waiter: Any, poll_seconds: int, **arguments: Any) -> None:
    waiter.wait(**arguments, WaiterConfig={"Delay": poll_seconds, "MaxAttempts": max(1, 3600 // poll_seconds)})


def create_change_set(
    cloudformation: Any,
    stack: str,
    source: Mapping[str, str],
    parameters: list[dict[str, str]],
    *,
    poll_seconds: int = 10,
) -> tuple[str | None, str, list[dict[str, Any]]]:
    """(change set id or None when nothing changes, its type, its changes)."""
    kind = change_set_type(_stack_status(cloudformation, stack))
    name = f"deploy-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
    created = cloudformation.create_change_set(
        StackName=stack,
        ChangeSetName=name,
        ChangeSetType=kind,
        Parameters=parameters,
        Capabilities=CAPABILITIES,
        Description="make deploy (infra/release.py) of build/<stage>/package",
        **source,
    )
    change_set_id = str(created["Id"])
    try:
        _wait(cloudformation.get_waiter("change_set_create_complete"), poll_seconds, ChangeSetName=change_set_id)
    except Exception:  # the waiter fails on FAILED, which is also how "no changes" ends
        described = cloudformation.describe_change_set(ChangeSetName=change_set_id)
        reason = str(described.get("StatusReason", ""))
        if any(text in reason for text in _NO_CHANGES):
            cloudformation.delete_change_set(ChangeSetName=change_set_id)
            return None, kind, []
        raise ReleaseError(f"change set {name} failed: {reason or described.get('Status')}") from None
    changes: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = cloudformation.describe_change_set(
            ChangeSetName=change_set_id, **({"NextToken": token} if token else {})
        )
        changes += page.get("Changes", [])
        token = page.get("NextToken")
        if not token:
            return change_set_id, kind, changes


def describe_change(change: Mapping[str, Any]) -> str:
    detail = change.get("ResourceChange", {})
    replacement = detail.get("Replacement")
    suffix = f" (replacement: {replacement})" if replacement and replacement != "False" else ""
    action, logical_id = detail.get("Action", "?"), detail.get("LogicalResourceId", "?")
    return f"{action:>7} {logical_id} {detail.get('ResourceType', '')}{suffix}"


def deploy_package(
    stage: str,
    *,
    identity: Mapping[str, str],
    directory: Path | None = None,
    session: Any = None,
    endpoint_url: str | None = None,
    execute: bool = True,
    alarm_email: str = "",
    waf: str = "stage-default",
    api_gateway_logs_role_arn: str = "",
    template_transport: str = "auto",
    poll_seconds: int = 10,
    account: str | None = None,
    report: Callable[[str], None] = print,
) -> Release:
    """Deploy build/<stage>/package (or ``directory``) as stack market-data-<stage>.

    ``identity``: the stage's identity settings by parameter name (JwtIssuer, JwtAudience,
    CorsAllowedOrigins and, for prod, JwtJwksUrl). ``session``/``endpoint_url``: where to deploy (a
    boto3 session, default the environment's; an emulator's endpoint). ``execute=False``: stop after
    creating the change set. ``template_transport``: "auto" (a body up to 51,200 bytes, else an S3 URL),
    "body" or "url". ``account``: names the artifact bucket without asking STS (default: STS's answer)."""
    directory = directory or package.package_dir(stage)
    template_path = directory / package.TEMPLATE_NAME
    if not template_path.is_file():
        raise ReleaseError(f"{template_path} is missing: run `make package STAGE={stage}` first")
    template = json.loads(template_path.read_text())
    allowed = template.get("Parameters", {}).get("Stage", {}).get("AllowedValues", [])
    if allowed != [stage]:
        raise ReleaseError(f"{template_path} was packaged for stage(s) {allowed}, not {stage!r}")
    if session is None:
        import boto3

        session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    # The identity settings, checked as the functions will check them at cold start.
    deploy.check_stage_settings(stage, {"Stage": stage, "Region": region, "Account": "000000000000", **identity})
    parameters = stack_parameters(
        template,
        identity=identity,
        alarm_email=alarm_email,
        waf=waf,
        api_gateway_logs_role_arn=api_gateway_logs_role_arn,
    )

    def client(service: str) -> Any:
        return session.client(service, region_name=region, endpoint_url=endpoint_url)

    account = account or str(client("sts").get_caller_identity()["Account"])
    s3 = client("s3")
    bucket = artifact_bucket(stage, account, region)
    deploy.ensure_bucket(s3, bucket, region)
    rewritten, uploaded = upload_artifacts(s3, bucket, template, directory)
    for name, uri in uploaded.items():
        report(f"artifact {name}: {uri}")
    body = json.dumps(rewritten, sort_keys=True, separators=(",", ":"))
    source = template_source(s3, bucket, body, region=region, endpoint_url=endpoint_url, transport=template_transport)
    cloudformation = client("cloudformation")
    stack = stack_name(stage)
    change_set_id, kind, changes = create_change_set(
        cloudformation, stack, source, parameters, poll_seconds=poll_seconds
    )
    release = Release(stack, bucket, change_set_id, kind, changes, uploaded=uploaded)
    if change_set_id is None:
        report(f"{stack}: no changes")
        release.outputs = _outputs(cloudformation, stack)
        return release
    report(f"{stack}: change set {change_set_id} ({kind}, {len(changes)} changes)")
    for change in changes:
        report(describe_change(change))
    if not execute:
        report("not executed (--no-execute): review it, then execute it or run `make deploy` again")
        return release
    cloudformation.execute_change_set(ChangeSetName=change_set_id)
    waiter = "stack_create_complete" if kind == "CREATE" else "stack_update_complete"
    try:
        _wait(cloudformation.get_waiter(waiter), poll_seconds, StackName=stack)
    except Exception as exc:  # the waiter's failure says only the final status: name what failed
        for line in failed_events(cloudformation, stack):
            report(line)
        raise ReleaseError(f"{stack}: {kind} did not complete ({exc})") from None
    release.executed = True
    release.outputs = _outputs(cloudformation, stack)
    for key, value in sorted(release.outputs.items()):
        report(f"{key} = {value}")
    return release


def failed_events(cloudformation: Any, stack: str, limit: int = 20) -> list[str]:
    """The stack's latest resource failures, oldest first (the first one is usually the cause)."""
    events = cloudformation.describe_stack_events(StackName=stack).get("StackEvents", [])
    failed = [e for e in events if str(e.get("ResourceStatus", "")).endswith("_FAILED")][:limit]
    return [
        f"FAILED {e.get('LogicalResourceId')} {e.get('ResourceType')}: {e.get('ResourceStatusReason', '')}"
        for e in reversed(failed)
    ]


def _outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    if _stack_status(cloudformation, stack) in (None, _REVIEW):
        return {}
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    return {item["OutputKey"]: item["OutputValue"] for item in described.get("Outputs", [])}


def destroy_package(
    stage: str, *, session: Any = None, endpoint_url: str | None = None, poll_seconds: int = 10
) -> None:
    """Delete stack market-data-<stage>, then empty and delete its artifact bucket."""
    if session is None:
        import boto3

        session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    account = str(session.client("sts", region_name=region, endpoint_url=endpoint_url).get_caller_identity()["Account"])
    cloudformation = session.client("cloudformation", region_name=region, endpoint_url=endpoint_url)
    stack = stack_name(stage)
    cloudformation.delete_stack(StackName=stack)
    _wait(cloudformation.get_waiter("stack_delete_complete"), poll_seconds, StackName=stack)
    s3 = session.resource("s3", region_name=region, endpoint_url=endpoint_url)
    bucket = s3.Bucket(artifact_bucket(stage, account, region))
    if bucket.creation_date is not None:
        bucket.objects.all().delete()
        bucket.delete()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["deploy", "destroy"])
    parser.add_argument("--stage", required=True, choices=deploy.DEPLOYABLE_STAGES)
    parser.add_argument("--package-dir", type=Path, default=None, help="default build/<stage>/package")
    parser.add_argument("--endpoint-url", default=None, help="an AWS emulator's endpoint (default: AWS)")
    parser.add_argument("--no-execute", action="store_true", help="create the change set only")
    deploy.add_stage_arguments(parser)
    args = parser.parse_args(argv)
    if args.action == "destroy":
        destroy_package(args.stage, endpoint_url=args.endpoint_url)
        return 0
    if args.stage == "prod" and not args.jwks_url:
        parser.error("prod verifies RS256 tokens: give --jwks-url https://.../.well-known/jwks.json")
    identity = deploy.identity_values(
        jwt_issuer=args.jwt_issuer, jwt_audience=args.jwt_audience, cors_origins=args.cors_origins
    )
    if args.jwks_url:
        identity["JwtJwksUrl"] = args.jwks_url
    try:
        deploy_package(
            args.stage,
            identity=identity,
            directory=args.package_dir,
            endpoint_url=args.endpoint_url,
            execute=not args.no_execute,
            alarm_email=args.alarm_email,
            waf=args.waf,
            api_gateway_logs_role_arn=args.api_gateway_logs_role_arn,
        )
    except (ReleaseError, deploy.RenderError) as exc:
        parser.exit(2, f"deploy refused: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
