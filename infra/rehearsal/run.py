"""`make rehearse`: the artifacts `make deploy` ships, deployed into an AWS emulator and exercised.

1. Start a Redis server and ministack (its own venv) on free ports, and the local provider server
   (the replay data over HTTP).
2. Take build/<stage>/package/ (`make package`): the function zip, the layers and sam.json; apply the
   rehearsal-only transform (infra/rehearsal/transform.py: its docstring lists every change) and
   deploy it through CloudFormation (change set created, then executed) at the emulator's endpoint.
3. Exercise the deployment through the emulated API Gateway URLs, each step named in the output:
   quote (REST, a bearer token → 200 with its source), websocket (connect, subscribe, a quote update
   made by the scheduled refresh), job (a manual run recorded and read back through the API), page (the
   dashboard at GET /, when the app has that route).
4. Compare the emulator's stack resources with the merged template minus the documented drops.
5. Delete the stack, stop every process. Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.deploy import REPO_ROOT
from infra.local.replay.transport import ReplayClock, YahooReplayTransport
from infra.rehearsal.emulator import ACCESS_KEY, REGION, Emulator
from infra.rehearsal.provider_server import ProviderServer
from infra.rehearsal.transform import (
    RehearsalSettings,
    drops,
    expected_resources,
    rehearsal_template,
)
from infra.release import Release, deploy_package, stack_parameters

PACKAGE_DIR = REPO_ROOT / "build" / "{stage}" / "package"
TEMPLATE_NAME = "sam.json"
STACK_PREFIX = "market-data"
# The stage's identity parameters, as an operator would give them (checked as deployed: https only).
ISSUER = "https://rehearsal.example.com/issuer"
AUDIENCE = "market-data-rehearsal"
ORIGINS = "https://dashboard.rehearsal.example.com"
STACK_TIMEOUT_SECONDS = 300
REPLAY_STEP_SECONDS = 30.0
UPDATE_TIMEOUT_SECONDS = 150  # the refresh runs every minute; ministack fires a rate rule a minute after creation


@dataclass
class Report:
    started: float = field(default_factory=time.monotonic)
    steps: list[tuple[str, bool, str]] = field(default_factory=list)

    def step(self, name: str, ok: bool, detail: str) -> None:
        self.steps.append((name, ok, detail))
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(ok for _, ok, _ in self.steps)


def _session() -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=ACCESS_KEY, region_name=REGION)


def _client(session: Any, service: str, endpoint: str) -> Any:
    return session.client(service, endpoint_url=endpoint)


# --- deploy ---------------------------------------------------------------------------------------


def deploy(session: Any, endpoint: str, stage: str, rehearsed: dict[str, Any], package: Path, work: Path,
           identity: Mapping[str, str]) -> Release:  # fmt: skip
    """`make deploy`'s own code (infra/release.py) at the emulator's endpoint: the same uploads and the
    same change set, created then executed, for the rehearsed template beside the package's zips."""
    directory = work / "package"
    directory.mkdir(parents=True)
    for artifact in package.glob("*.zip"):
        try:  # the same bytes, not a copy of 55 MB (release.py refuses a symlink out of its directory)
            os.link(artifact, directory / artifact.name)
        except OSError:
            shutil.copy2(artifact, directory / artifact.name)
    (directory / TEMPLATE_NAME).write_text(json.dumps(rehearsed, indent=2))
    log = (work / "logs" / "deploy.log").open("w")
    try:
        return deploy_package(
            stage,
            identity=identity,
            directory=directory,
            session=session,
            endpoint_url=endpoint,
            poll_seconds=1,
            report=lambda line: print(line, file=log, flush=True),
        )
    finally:
        log.close()


def _wait(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(1)
    raise RuntimeError(f"{what} not ready within {timeout:.0f} s")


def _failure_reasons(cloudformation: Any, stack: str) -> str:
    try:
        events = cloudformation.describe_stack_events(StackName=stack)["StackEvents"]
    except Exception:
        return "no stack events"
    failed = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events
              if e["ResourceStatus"].endswith("FAILED")]  # fmt: skip
    return "; ".join(failed[:5]) or "no failed resource"


# --- the exercises ----------------------------------------------------------------------------------


def _http(method: str, url: str, token: str | None = None, body: bytes | None = None) -> tuple[int, bytes, str]:
    request = urllib.request.Request(url, data=body, method=method)  # noqa: S310 - the emulator's URL
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310
            return answer.status, answer.read(), answer.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def _token(secret: str, *, operator: bool = False, subject: str = "rehearsal-user") -> str:
    import jwt

    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 900}
    if operator:
        claims["cognito:groups"] = ["operators"]  # Settings.operator_group's default
    return jwt.encode(claims, secret, algorithm="HS256")


def exercise_quote(report: Report, rest_url: str, token: str) -> None:
    status, body, _ = _http("GET", f"{rest_url}/api/v1/market/quote/AAPL", token)
    unauthenticated, _, _ = _http("GET", f"{rest_url}/api/v1/market/quote/AAPL")
    try:
        payload = json.loads(body)
    except ValueError:
        payload = {}
    data = payload.get("data", payload) if isinstance(payload, dict) else {}
    source = data.get("source") if isinstance(data, dict) else None
    ok = status == 200 and bool(source) and unauthenticated in (401, 403)
    report.step(
        "quote",
        ok,
        f"GET /api/v1/market/quote/AAPL with a token: {status}, source={source!r}, price={data.get('price')!r}; "
        f"without a token: {unauthenticated}" + ("" if ok else f"; body {body[:300]!r}"),
    )


def exercise_websocket(report: Report, ws_url: str, token: str) -> None:
    import websocket

    received: list[dict[str, Any]] = []
    try:
        # ?token=: ministack accepts the handshake without the $connect answer's Sec-WebSocket-Protocol
        # header, so a client offering ["bearer", token] (the browser's way) fails there (README).
        connection = websocket.create_connection(f"{ws_url}?token={token}", timeout=20)
    except Exception as exc:
        report.step("websocket", False, f"connect failed: {exc!r}")
        return
    try:
        connection.send(json.dumps({"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}}))
        deadline = time.monotonic() + UPDATE_TIMEOUT_SECONDS
        update = None
        while time.monotonic() < deadline and update is None:
            connection.settimeout(max(1.0, deadline - time.monotonic()))
            try:
                message = json.loads(connection.recv())
            except websocket.WebSocketTimeoutException:
                break
            received.append(message)
            if message.get("type") == "quote_update" and not message.get("data", {}).get("snapshot", True):
                update = message
    finally:
        connection.close()
    kinds = [m.get("type") for m in received]
    ok = "subscribed" in kinds and update is not None
    detail = f"connect + subscribe AAPL: received {kinds[:8]}"
    if update is not None:
        data = update["data"]
        detail += f"; scheduler-made update price={data.get('quote', {}).get('price')!r} source={data.get('source')!r}"
    else:
        detail += f"; no scheduler-made quote_update within {UPDATE_TIMEOUT_SECONDS} s"
    report.step("websocket", ok, detail)


def exercise_job(report: Report, rest_url: str, operator_token: str) -> None:
    status, body, _ = _http("POST", f"{rest_url}/api/v1/market/jobs/refresh_indices/run", operator_token, b"")
    try:
        run = json.loads(body)
    except ValueError:
        run = {}
    run = run.get("data", run) if isinstance(run, dict) else {}
    task_id = run.get("task_id") if isinstance(run, dict) else None
    read_status, read_body, _ = (0, b"", "")
    if task_id:
        read_status, read_body, _ = _http("GET", f"{rest_url}/api/v1/market/jobs/{task_id}", operator_token)
    try:
        read = json.loads(read_body) if read_body else {}
    except ValueError:
        read = {}
    read = read.get("data", read) if isinstance(read, dict) else {}
    ok = status == 200 and bool(task_id) and read_status == 200 and read.get("task_id") == task_id
    report.step(
        "job",
        ok,
        f"POST /jobs/refresh_indices/run: {status} task {task_id!r} status {run.get('status')!r}; "
        f"GET /jobs/{task_id}: {read_status} status {read.get('status')!r}"
        + ("" if ok else f"; bodies {body[:200]!r} {read_body[:200]!r}"),
    )


def exercise_page(report: Report, rest_url: str, app_has_page: bool) -> None:
    status, body, content_type = _http("GET", f"{rest_url}/")
    if not app_has_page:
        # The dashboard route (GET /) is another branch's; until it is merged the app has no such route.
        report.step("page", True, f"GET /: {status} (the app has no GET / route yet: the page is not rehearsed)")
        return
    ok = status == 200 and "text/html" in content_type and b"<html" in body.lower()
    report.step("page", ok, f"GET /: {status} {content_type} {len(body)} bytes")


def compare_resources(report: Report, cloudformation: Any, stack: str, template: Mapping[str, Any],
                      parameters: Mapping[str, str]) -> None:  # fmt: skip
    """Every resource of the merged template (SAM resources by their own logical id) minus the documented
    drops and the resources whose condition is false must be in the emulator's stack, and every resource
    of the emulator's processed template (after SAM) too, each with its type."""
    actual = {
        r["LogicalResourceId"]: r["ResourceType"]
        for r in cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
        if r["ResourceStatus"].endswith("COMPLETE")
    }
    conditions = resolve_conditions(template, parameters)
    sam_types = {
        "AWS::Serverless::Function": "AWS::Lambda::Function",
        "AWS::Serverless::Api": "AWS::ApiGateway::RestApi",
        "AWS::Serverless::LayerVersion": "AWS::Lambda::LayerVersion",
    }
    expected = {k: sam_types.get(v, v) for k, v in expected_resources(template, conditions).items()}
    processed = cloudformation.get_template(StackName=stack, TemplateStage="Processed")["TemplateBody"]
    processed = json.loads(processed) if isinstance(processed, str) else processed
    processed_expected = {
        k: v["Type"] for k, v in processed.get("Resources", {}).items() if conditions.get(v.get("Condition", ""), True)
    }

    def present(logical_id: str, resource_type: str) -> bool:
        if actual.get(logical_id) == resource_type:
            return True
        # SAM names a layer version <LogicalId><content hash> (a new version per content).
        return resource_type == "AWS::Lambda::LayerVersion" and any(
            k.startswith(logical_id) and t == resource_type for k, t in actual.items()
        )

    missing = sorted(k for k, t in {**processed_expected, **expected}.items() if not present(k, t))
    dropped = sorted(f"{d.logical_id} ({d.resource_type})" for d in drops(template))
    report.step(
        "resources",
        not missing,
        f"{len(actual)} resources in the emulator's stack; merged template {len(template['Resources'])} resources, "
        f"{len(dropped)} dropped as documented ({', '.join(dropped)}), "
        f"{sum(1 for v in conditions.values() if not v)} conditions false; "
        + (f"MISSING {missing}" if missing else "none missing"),
    )


def resolve_conditions(template: Mapping[str, Any], parameters: Mapping[str, str]) -> dict[str, bool]:
    """The template's conditions under ``parameters`` (defaults for the rest)."""
    values = {k: str(v.get("Default", "")) for k, v in template.get("Parameters", {}).items()}
    values.update(parameters)
    definitions: Mapping[str, Any] = template.get("Conditions", {})
    resolved: dict[str, bool] = {}

    def value(node: Any) -> Any:
        if isinstance(node, dict) and "Ref" in node:
            return values.get(node["Ref"], node["Ref"])
        if isinstance(node, dict) and "Fn::FindInMap" in node:
            name, key, attribute = (value(part) for part in node["Fn::FindInMap"])
            return str(template["Mappings"][name][key][attribute]).lower()
        if isinstance(node, dict):
            return condition(node)
        return str(node)

    def condition(node: Any) -> bool:
        if "Condition" in node:
            return evaluate(node["Condition"])
        if "Fn::Equals" in node:
            left, right = (value(part) for part in node["Fn::Equals"])
            return bool(str(left).lower() == str(right).lower())
        if "Fn::Not" in node:
            return not condition(node["Fn::Not"][0])
        if "Fn::And" in node:
            return all(condition(part) for part in node["Fn::And"])
        if "Fn::Or" in node:
            return any(condition(part) for part in node["Fn::Or"])
        raise ValueError(f"unsupported condition {node}")

    def evaluate(name: str) -> bool:
        if name not in resolved:
            resolved[name] = condition(definitions[name])
        return resolved[name]

    for name in definitions:
        evaluate(name)
    return resolved


# --- main -------------------------------------------------------------------------------------------


def _secret(session: Any, endpoint: str, arn: str) -> str:
    value = _client(session, "secretsmanager", endpoint).get_secret_value(SecretId=arn)["SecretString"]
    try:
        parsed = json.loads(value)
    except ValueError:
        return str(value)
    return str(parsed.get("password", parsed.get("secret", value))) if isinstance(parsed, dict) else str(value)


def _app_has_page() -> bool:
    import app as chalice_app

    return "/" in chalice_app.app.routes and "GET" in chalice_app.app.routes["/"]


def rehearse(stage: str, package: Path, work: Path, *, keep: bool = False) -> Report:
    report = Report()
    template_path = package / TEMPLATE_NAME
    if not template_path.exists():
        raise SystemExit(f"{template_path} not found: run `make package STAGE={stage}` first")
    template = json.loads(template_path.read_text())
    stack = f"{STACK_PREFIX}-{stage}"
    identity = {"JwtIssuer": ISSUER, "JwtAudience": AUDIENCE, "CorsAllowedOrigins": ORIGINS}
    parameters = {p["ParameterKey"]: p["ParameterValue"] for p in stack_parameters(template, identity=identity)}
    parameters["Stage"] = stage
    if work.exists():
        shutil.rmtree(work)
    (work / "logs").mkdir(parents=True)
    # The replay moves to the next trading day every REPLAY_STEP_SECONDS: the scheduled refresh then
    # finds changed prices, as `make run` does.
    transport = YahooReplayTransport(clock=ReplayClock(REPLAY_STEP_SECONDS, time.time()), calendar="env")
    with ProviderServer(transport) as provider, Emulator(work / "logs") as emulator:
        session = _session()
        rehearsed = rehearsal_template(template, RehearsalSettings(provider.url, emulator.endpoint))
        started = time.monotonic()
        try:
            release = deploy(session, emulator.endpoint, stage, rehearsed, package, work, identity)
        except Exception as exc:
            cloudformation = _client(session, "cloudformation", emulator.endpoint)
            raise RuntimeError(f"deploy failed: {exc}: {_failure_reasons(cloudformation, stack)}") from exc
        report.step(
            "deploy",
            release.executed,
            f"infra/release.py: change set {release.change_set_type} with {len(release.changes)} changes executed, "
            f"stack {stack} complete in {time.monotonic() - started:.1f} s",
        )
        cloudformation = _client(session, "cloudformation", emulator.endpoint)
        resources = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cloudformation.describe_stack_resources(StackName=stack)["StackResources"]
        }
        jwt_secret = _secret(session, emulator.endpoint, resources["JwtSecret"])
        rest_url = f"{emulator.endpoint}/_aws/execute-api/{resources['RestAPI']}/{stage}"
        ws_url = f"ws://127.0.0.1:{emulator.gateway_port}/_aws/execute-api/{resources['WebsocketAPI']}/{stage}"
        exercise_quote(report, rest_url, _token(jwt_secret))
        exercise_websocket(report, ws_url, _token(jwt_secret, subject="rehearsal-ws"))
        exercise_job(report, rest_url, _token(jwt_secret, operator=True, subject="rehearsal-operator"))
        exercise_page(report, rest_url, _app_has_page())
        compare_resources(report, cloudformation, stack, template, parameters)
        dump_function_logs(session, emulator.endpoint, work / "logs")
        if keep:
            input(f"kept running: REST {rest_url}, WebSocket {ws_url}; Enter to tear down ")
        cloudformation.delete_stack(StackName=stack)
        try:
            _wait(lambda: _deleted(cloudformation, stack), "the stack's deletion", 120)
            report.step("teardown", True, f"stack {stack} deleted")
        except RuntimeError as exc:
            report.step("teardown", False, str(exc))
    left = emulator.alive()
    report.step("processes", not left, "every process stopped" if not left else f"still running: {left}")
    return report


def dump_function_logs(session: Any, endpoint: str, directory: Path) -> None:
    """Every function's log (CloudWatch Logs in the emulator) into ``directory``/functions/, for a
    failed step's post-mortem."""
    logs = _client(session, "logs", endpoint)
    target = directory / "functions"
    target.mkdir(parents=True, exist_ok=True)
    for group in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]:
        name = group["logGroupName"]
        events = logs.filter_log_events(logGroupName=name, limit=10_000).get("events", [])
        lines = "".join(f"{event['message'].rstrip()}\n" for event in events)
        (target / f"{name.rsplit('/', 1)[-1]}.log").write_text(lines)


def _deleted(cloudformation: Any, stack: str) -> bool:
    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except Exception:
        return True
    return not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="dev", choices=["dev", "prod"])
    parser.add_argument("--package-dir", type=Path, default=None, help="default: build/<stage>/package")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "build" / "rehearsal")
    parser.add_argument("--keep", action="store_true", help="wait for Enter before tearing down")
    args = parser.parse_args()
    package = args.package_dir or Path(str(PACKAGE_DIR).format(stage=args.stage))
    started = time.monotonic()
    try:
        report = rehearse(args.stage, package, args.work_dir, keep=args.keep)
    except RuntimeError as exc:
        print(f"rehearsal failed: {exc} (logs: {args.work_dir / 'logs'})", file=sys.stderr)
        return 1
    passed = sum(1 for _, ok, _ in report.steps if ok)
    steps = ", ".join(name for name, _, _ in report.steps)
    print(f"rehearsal took {time.monotonic() - started:.1f} s (steps: {steps})")
    print(f"rehearsal: {passed} passed, {len(report.steps) - passed} failed")
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
