"""`make deploy STAGE=dev|prod` and `make destroy STAGE=...`: the steps, in order.

deploy:
1. Build the Lambda layer with the heavy dependencies (infra/layer/build.py → dist/), upload it to the
   stage's artifact bucket (created if missing), content-addressed (layers/yfinance-<sha256>.zip).
2. Create or update the CloudFormation stack ``market-data-<stage>`` from infra/template.yaml
   (tables, VPC + NAT, Redis, secrets, layer, alarms), and wait for it.
3. Read the stack's outputs and render the Chalice project into build/<stage>/: app.py, chalicelib/,
   requirements.txt and .chalice/ with every ``from-stack:<Output>`` value in config.json and the
   stage's IAM policy replaced by the output, and ``from-deploy:<Name>`` by what this script knows
   (region, account, stage, and, after the first Chalice deploy, the WebSocket API's id).
4. ``chalice deploy --stage <stage>`` in the rendered project; if the WebSocket API id was not known
   yet (first deploy), render again with it and deploy once more (the jobs need the management
   endpoint). ``.chalice/deployed/<stage>.json`` is copied back so the next deploy updates in place.
   The REST API's id goes into the stack as ``RestApiId`` (its gateway responses: unknown routes and
   methods answer our 404); on the first deploy that is a stack update after Chalice's, and the second
   ``chalice deploy`` publishes it.
5. Set the fan-out worker's asynchronous-invoke config (retries, maximum event age, on-failure
   destination: the stack's FanoutFailureQueue), which Chalice has no setting for.

destroy: ``chalice delete`` in the rendered project, then delete the stack (the tables' point-in-time
recovery and the secrets' recovery window still apply), then empty and delete the artifact bucket.

Run with ``--dry-run`` to print the plan and the rendered configuration without calling AWS.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "infra" / "template.yaml"
CHALICE_DIR = REPO_ROOT / ".chalice"
BUILD_DIR = REPO_ROOT / "build"
STACK_PREFIX = "market-data"
FROM_STACK = "from-stack:"
FROM_DEPLOY = "from-deploy:"
DEPLOYABLE_STAGES = ("dev", "prod")
FANOUT_WORKER = "fanout_worker"
FANOUT_MAX_EVENT_AGE_SECONDS = 60


class RenderError(Exception):
    """A placeholder that cannot be resolved: the stack lacks an output, or a deploy value is missing."""


def _resolve_text(value: str, outputs: Mapping[str, str], deploy: Mapping[str, str]) -> str | None:
    """A string with its placeholders replaced; None when it needs a deploy value not known yet."""
    result = value
    while FROM_STACK in result:
        start = result.index(FROM_STACK)
        end = start + len(FROM_STACK)
        while end < len(result) and (result[end].isalnum()):
            end += 1
        name = result[start + len(FROM_STACK) : end]
        if name not in outputs:
            raise RenderError(f"the stack has no output {name!r} (referenced as {value!r})")
        result = result[:start] + outputs[name] + result[end:]
    while FROM_DEPLOY in result:
        start = result.index(FROM_DEPLOY)
        end = start + len(FROM_DEPLOY)
        while end < len(result) and result[end].isalnum():
            end += 1
        name = result[start + len(FROM_DEPLOY) : end]
        if name not in deploy:
            return None
        result = result[:start] + deploy[name] + result[end:]
    return result


def render(document: Any, outputs: Mapping[str, str], deploy: Mapping[str, str], *, path: str = "") -> Any:
    """Replace placeholders everywhere in a JSON document. A list item holding a comma-joined output
    (PrivateSubnetIds) becomes several items. An environment variable whose deploy value is unknown is
    left out (the second pass fills it); anywhere else an unknown deploy value is an error."""
    if isinstance(document, dict):
        rendered: dict[str, Any] = {}
        for key, value in document.items():
            if isinstance(value, str) and path.endswith("environment_variables"):
                text = _resolve_text(value, outputs, deploy)
                if text is not None:
                    rendered[key] = text
                continue
            rendered[key] = render(value, outputs, deploy, path=f"{path}.{key}")
        return rendered
    if isinstance(document, list):
        items: list[Any] = []
        for item in document:
            if (
                isinstance(item, str)
                and item.startswith(FROM_STACK)
                and "," in outputs.get(item[len(FROM_STACK) :], "")
            ):
                items.extend(part.strip() for part in outputs[item[len(FROM_STACK) :]].split(",") if part.strip())
            else:
                items.append(render(item, outputs, deploy, path=path))
        return items
    if isinstance(document, str):
        text = _resolve_text(document, outputs, deploy)
        if text is None:
            raise RenderError(f"{path}: {document!r} needs a deploy value that is not known")
        return text
    return document


def placeholders(document: Any) -> set[str]:
    """Every ``from-stack:`` output name a document refers to."""
    found: set[str] = set()
    if isinstance(document, dict):
        for value in document.values():
            found |= placeholders(value)
    elif isinstance(document, list):
        for item in document:
            found |= placeholders(item)
    elif isinstance(document, str):
        rest = document
        while FROM_STACK in rest:
            rest = rest[rest.index(FROM_STACK) + len(FROM_STACK) :]
            name = ""
            for char in rest:
                if not char.isalnum():
                    break
                name += char
            found.add(name)
    return found


def stage_documents(stage: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checked-in config.json and the stage's IAM policy (with placeholders)."""
    config = json.loads((CHALICE_DIR / "config.json").read_text())
    policy_file = config["stages"][stage]["iam_policy_file"]
    policy = json.loads((CHALICE_DIR / policy_file).read_text())
    return config, policy


def deploy_values(
    stage: str, region: str, account: str, websocket_api_id: str | None, extra: Mapping[str, str]
) -> dict[str, str]:
    values = {"Stage": stage, "Region": region, "Account": account, **extra}
    if websocket_api_id:
        values["WebSocketApiId"] = websocket_api_id
        values["WebSocketManagementEndpoint"] = f"https://{websocket_api_id}.execute-api.{region}.amazonaws.com/{stage}"
    else:
        values["WebSocketApiId"] = "*"  # first deploy: any API of this account and stage, narrowed on the second pass
    return values


def render_project(
    stage: str, outputs: Mapping[str, str], deploy: Mapping[str, str], destination: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the deployable project for ``stage`` into ``destination``; returns (config, policy)."""
    config, policy = stage_documents(stage)
    rendered = copy.deepcopy(config)
    rendered["stages"] = {stage: render(config["stages"][stage], outputs, deploy, path=f"stages.{stage}")}
    rendered_policy = render(policy, outputs, deploy)
    if destination.exists():
        shutil.rmtree(destination / "chalicelib", ignore_errors=True)
    (destination / ".chalice").mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO_ROOT / "app.py", destination / "app.py")
    shutil.copy2(REPO_ROOT / "requirements.txt", destination / "requirements.txt")
    shutil.copytree(
        REPO_ROOT / "chalicelib", destination / "chalicelib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    (destination / ".chalice" / "config.json").write_text(json.dumps(rendered, indent=2) + "\n")
    (destination / ".chalice" / config["stages"][stage]["iam_policy_file"]).write_text(
        json.dumps(rendered_policy, indent=2) + "\n"
    )
    deployed = CHALICE_DIR / "deployed" / f"{stage}.json"
    if deployed.exists():
        (destination / ".chalice" / "deployed").mkdir(exist_ok=True)
        shutil.copy2(deployed, destination / ".chalice" / "deployed" / f"{stage}.json")
    return rendered, rendered_policy


# --- the AWS side (not reachable from tests: no network but the package registries) ------------------


def _boto3() -> Any:
    import boto3

    return boto3


def _stack_outputs(cloudformation: Any, stack: str) -> dict[str, str]:
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    return {item["OutputKey"]: item["OutputValue"] for item in described.get("Outputs", [])}


def _deployed_id(stage: str, resource_type: str, key: str) -> str | None:
    """An id Chalice recorded in .chalice/deployed/<stage>.json (None before the first deploy)."""
    deployed = CHALICE_DIR / "deployed" / f"{stage}.json"
    if not deployed.exists():
        return None
    for resource in json.loads(deployed.read_text()).get("resources", []):
        if resource.get("resource_type") == resource_type:
            return str(resource.get(key) or "") or None
    return None


def _websocket_api_id(stage: str) -> str | None:
    return _deployed_id(stage, "websocket_api", "websocket_api_id")


def _rest_api_id(stage: str) -> str | None:
    return _deployed_id(stage, "rest_api", "rest_api_id")


def _ensure_bucket(s3: Any, name: str, region: str) -> None:
    try:
        s3.head_bucket(Bucket=name)
    except Exception:  # 404 or 403: try to create it; a real permission problem fails right below
        arguments: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**arguments)
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True,
            },
        )


def _deploy_stack(cloudformation: Any, stack: str, parameters: Mapping[str, str]) -> None:
    body = TEMPLATE.read_text()
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()]
    capabilities = ["CAPABILITY_NAMED_IAM"]
    try:
        cloudformation.describe_stacks(StackName=stack)
        exists = True
    except Exception:  # "does not exist" is a ClientError told apart only by its message
        exists = False
    if exists:
        try:
            cloudformation.update_stack(
                StackName=stack, TemplateBody=body, Parameters=params, Capabilities=capabilities
            )
        except Exception as exc:
            if "No updates are to be performed" in str(exc):
                return
            raise
        cloudformation.get_waiter("stack_update_complete").wait(StackName=stack)
    else:
        cloudformation.create_stack(StackName=stack, TemplateBody=body, Parameters=params, Capabilities=capabilities)
        cloudformation.get_waiter("stack_create_complete").wait(StackName=stack)


def _chalice(project: Path, *arguments: str) -> None:
    # The venv's own chalice (the package has no __main__) and fixed arguments: nothing from outside.
    chalice = Path(sys.executable).parent / "chalice"
    subprocess.run([str(chalice), "--project-dir", str(project), *arguments], check=True)  # noqa: S603


def fanout_worker_invoke_config(stage: str, failure_queue_arn: str) -> dict[str, Any]:
    """Lambda's asynchronous-invoke settings of the fan-out worker, which Chalice cannot set: Lambda's
    two retries, a maximum event age of one refresh period (an older round is superseded by the next
    one), and the on-failure destination (the stack's queue, watched by an alarm)."""
    return {
        "FunctionName": f"{STACK_PREFIX}-{stage}-{FANOUT_WORKER}",
        "MaximumRetryAttempts": 2,
        "MaximumEventAgeInSeconds": FANOUT_MAX_EVENT_AGE_SECONDS,
        "DestinationConfig": {"OnFailure": {"Destination": failure_queue_arn}},
    }


def configure_fanout_worker(lambda_client: Any, stage: str, failure_queue_arn: str) -> dict[str, Any]:
    settings = fanout_worker_invoke_config(stage, failure_queue_arn)
    lambda_client.put_function_event_invoke_config(**settings)
    return settings


def deploy(stage: str, *, alarm_email: str, jwks_url: str | None, dry_run: bool) -> int:
    boto3 = _boto3()
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    known_rest_api = _rest_api_id(stage)
    if dry_run:
        account = "123456789012"
        config, policy = stage_documents(stage)
        used = placeholders(config["stages"][stage]) | placeholders(policy)
        outputs = {name: f"<{name}>" for name in sorted(used)}
        outputs["PrivateSubnetIds"] = "<subnet-a>,<subnet-b>"
    else:
        account = session.client("sts").get_caller_identity()["Account"]
        from infra.layer.build import build_layer  # the heavy dependencies, built for Lambda's platform

        layer_zip = build_layer()
        digest = hashlib.sha256(layer_zip.read_bytes()).hexdigest()[:16]
        bucket = f"{STACK_PREFIX}-{stage}-artifacts-{account}-{region}"
        s3 = session.client("s3")
        _ensure_bucket(s3, bucket, region)
        key = f"layers/yfinance-{digest}.zip"
        s3.upload_file(str(layer_zip), bucket, key)
        cloudformation = session.client("cloudformation")
        stack = f"{STACK_PREFIX}-{stage}"
        stack_parameters = {"Stage": stage, "LayerBucket": bucket, "LayerKey": key, "AlarmEmail": alarm_email}
        # The REST API's gateway responses (template: MissingRouteGatewayResponse) need its id: known
        # from the previous deploy, or set right after the first one below.
        _deploy_stack(cloudformation, stack, {**stack_parameters, "RestApiId": known_rest_api or ""})
        outputs = _stack_outputs(cloudformation, stack)
    extra = {"JwtJwksUrl": jwks_url} if jwks_url else {}
    project = BUILD_DIR / stage
    known_api = _websocket_api_id(stage)
    config, policy = render_project(stage, outputs, deploy_values(stage, region, account, known_api, extra), project)
    if dry_run:
        print(json.dumps({"config": config["stages"][stage], "policy": policy}, indent=2))
        print(f"dry run: would `chalice deploy --stage {stage}` in {project}")
        invoke_config = fanout_worker_invoke_config(stage, outputs.get("FanoutFailureQueueArn", "<queue>"))
        print(f"dry run: would put the fan-out worker's event invoke config {json.dumps(invoke_config)}")
        return 0
    _chalice(project, "deploy", "--stage", stage)
    shutil.copy2(project / ".chalice" / "deployed" / f"{stage}.json", CHALICE_DIR / "deployed" / f"{stage}.json")
    api_id = _websocket_api_id(stage)
    rest_api = _rest_api_id(stage)
    if rest_api and rest_api != known_rest_api:
        # First deploy (or a recreated API): now the gateway responses can be attached to it.
        _deploy_stack(cloudformation, stack, {**stack_parameters, "RestApiId": rest_api})
    if (api_id and api_id != known_api) or (rest_api and rest_api != known_rest_api):
        # Again: the jobs need the WebSocket management endpoint, and the REST stage needs a deployment
        # that carries the gateway responses (every `chalice deploy` makes one).
        render_project(stage, outputs, deploy_values(stage, region, account, api_id, extra), project)
        _chalice(project, "deploy", "--stage", stage)
        shutil.copy2(project / ".chalice" / "deployed" / f"{stage}.json", CHALICE_DIR / "deployed" / f"{stage}.json")
    configure_fanout_worker(session.client("lambda"), stage, outputs["FanoutFailureQueueArn"])
    return 0


def destroy(stage: str) -> int:
    boto3 = _boto3()
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    account = session.client("sts").get_caller_identity()["Account"]
    project = BUILD_DIR / stage
    if (CHALICE_DIR / "deployed" / f"{stage}.json").exists():
        cloudformation = session.client("cloudformation")
        outputs = _stack_outputs(cloudformation, f"{STACK_PREFIX}-{stage}")
        render_project(stage, outputs, deploy_values(stage, region, account, _websocket_api_id(stage), {}), project)
        _chalice(project, "delete", "--stage", stage)
        (CHALICE_DIR / "deployed" / f"{stage}.json").unlink(missing_ok=True)
    cloudformation = session.client("cloudformation")
    cloudformation.delete_stack(StackName=f"{STACK_PREFIX}-{stage}")
    cloudformation.get_waiter("stack_delete_complete").wait(StackName=f"{STACK_PREFIX}-{stage}")
    bucket = session.resource("s3").Bucket(f"{STACK_PREFIX}-{stage}-artifacts-{account}-{region}")
    bucket.objects.all().delete()
    bucket.delete()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["deploy", "destroy"])
    parser.add_argument("--stage", required=True, choices=DEPLOYABLE_STAGES)
    parser.add_argument("--alarm-email", default="", help="subscribed to the alarm topic (confirm the e-mail)")
    parser.add_argument("--jwks-url", default=None, help="prod: the identity provider's JWKS URL (RS256)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if args.action == "deploy":
        if args.stage == "prod" and not args.jwks_url:
            parser.error("prod verifies RS256 tokens: give --jwks-url https://.../.well-known/jwks.json")
        return deploy(args.stage, alarm_email=args.alarm_email, jwks_url=args.jwks_url, dry_run=args.dry_run)
    return destroy(args.stage)


if __name__ == "__main__":
    raise SystemExit(main())
