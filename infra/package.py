"""`make package STAGE=dev|prod`: the deployable artifacts of one stage, under build/<stage>/package/.

    deployment.zip      the function code (every function of app.py shares it): `chalice package`'s zip,
                        rebuilt reproducibly (sorted entries, fixed timestamps and modes) without what the
                        Lambda runtime provides (boto3, botocore, s3transfer, jmespath) and with
                        bytecode precompiled for the runtime's Python (unchecked-hash .pyc: Lambda's code
                        directory is read-only, so without it every cold start compiles what it imports)
    yfinance-layer.zip  yfinance and its pandas/numpy/curl_cffi/lxml stack (infra/layer/build.py)
    tracing-layer.zip   the X-Ray SDK and wrapt (infra/layer/tracing-requirements.txt); attached to every
                        function when the stage has X-Ray on (dev and prod both do)
                        (both layers precompiled the same way: Lambda's /opt is read-only too)
    sam.json            ONE CloudFormation (SAM) template for the whole stage: `chalice package
                        --merge-template` of the app with infra/template.yaml, everything wired inside it

Nothing is resolved after the stack exists: every value `infra/deploy.py` renders into the Chalice
config from a separate infra stack (``from-stack:<Output>``) or learns between two `chalice deploy` runs
(``from-deploy:<Name>``) becomes an intrinsic of this one template: an output's own expression (``Ref``,
``Fn::GetAtt``, ``Fn::Sub``), the WebSocket API's ``Ref`` (its management endpoint), the account and
region pseudo parameters, or a stack parameter (the identity settings, given at deploy time so one
artifact serves any identity provider). What `infra/deploy.py` did with API calls after `chalice deploy`
lives in the template too: the fan-out worker's asynchronous-invoke config
(``AWS::Lambda::EventInvokeConfig``), the REST and WebSocket stages' throttles, access logs and
execution-logging switch, the REST stage's X-Ray tracing, and the gateway responses (inside the REST
API's OpenAPI body, so they ship with its deployment).

`infra/release.py` deploys exactly these files (`make deploy`). The files' paths and names are an
interface: tests/integration/test_package_size.py and the emulator rehearsal read them.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra import deploy
from infra.layer import build

REPO_ROOT = deploy.REPO_ROOT
BUILD_DIR = REPO_ROOT / "build"
PACKAGE_DIR_NAME = "package"
FUNCTION_ZIP = "deployment.zip"
TEMPLATE_NAME = "sam.json"
YFINANCE_LAYER_ZIP = build.LAYER_ZIP_NAME  # yfinance-layer.zip
TRACING_LAYER_ZIP = build.TRACING_LAYER_ZIP_NAME  # tracing-layer.zip
# The Lambda runtime's own SDK (and what only it needs): never shipped, whatever pulls it in.
RUNTIME_PROVIDED = build.RUNTIME_PROVIDED
FUNCTION_ZIP_LIMIT = 12 * build.MB
# Subpackages of shipped distributions that nothing in the app imports (about 2.2 MB of the zip): the
# Powertools utilities other than logging, metrics and tracing; pydantic's v1 compatibility namespace;
# the Redis modules' command groups (RediSearch, JSON, TimeSeries, Bloom, vector sets: imported only
# when their methods are called, which the app never does). tests/integration/test_package_size.py
# imports the app and every chalicelib module from the unpacked zip, and serves a first request.
PRUNED = (
    "aws_lambda_powertools/event_handler",
    *(
        f"aws_lambda_powertools/utilities/{name}"
        for name in (
            "auth_alpha",
            "batch",
            "circuit_breaker",
            "data_classes",
            "data_masking",
            "feature_flags",
            "idempotency",
            "kafka",
            "parameters",
            "parser",
            "streaming",
            "validation",
        )
    ),
    "pydantic/v1",
    *(f"redis/commands/{name}" for name in ("bf", "json", "search", "timeseries", "vectorset")),
)
# Lambda runs the code from /var/task: tracebacks of precompiled modules name it there.
LAMBDA_TASK_ROOT = "/var/task"
PYC_TAG = f"cpython-{build.PYTHON_VERSION.replace('.', '')}"

# Chalice's logical ids in sam.json (chalice/package.py: the REST function is always APIHandler).
REST_API = "RestAPI"
WEBSOCKET_API = "WebsocketAPI"
WEBSOCKET_STAGE = "WebsocketAPIStage"
REST_FUNCTION_ID = "APIHandler"
TRACING_LAYER = "TracingLayer"
API_LOGGING_READY = "ApiGatewayLoggingReady"
FANOUT_INVOKE_CONFIG = "FanoutWorkerEventInvokeConfig"
# Stack parameters that carry the stage's identity settings (infra/deploy.py's ``from-deploy:`` names).
IDENTITY_PARAMETERS = {
    "JwtIssuer": "the identity provider's issuer (the tokens' iss)",
    "JwtAudience": "this API's audience (the tokens' aud)",
    "CorsAllowedOrigins": "the dashboard's https origins, comma-separated",
    "JwtJwksUrl": "the identity provider's JWKS URL (RS256)",
}
# Parameters of infra/template.yaml that only the two-stack path needs (the layer's S3 location and
# the REST API of a separate `chalice deploy`): here the layer is an artifact and the API a resource.
TWO_STACK_PARAMETERS = ("LayerBucket", "LayerKey", "RestApiId")

# Placeholders left in the rendered Chalice project, turned into intrinsics in sam.json.
_OPEN, _CLOSE = "@@", "@@"


class PackageError(Exception):
    """The package cannot be built as asked (wrong Python, a dependency that does not fit, ...)."""


@dataclass(frozen=True)
class Artifacts:
    directory: Path
    function_zip: Path
    template: Path
    layers: tuple[Path, ...]


def package_dir(stage: str) -> Path:
    return BUILD_DIR / stage / PACKAGE_DIR_NAME


def check_python(runtime: str = f"python{build.PYTHON_VERSION}") -> None:
    """Bytecode is specific to a Python minor version, and Chalice names the runtime after the local
    interpreter: a build on another minor version would ship .pyc files the runtime ignores (and the
    layers are built for the runtime's version)."""
    local = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if local != runtime:
        raise PackageError(
            f"this interpreter is {local} but the stage's Lambda runtime is {runtime}: build the package with "
            f"{runtime} (its bytecode and Chalice's Runtime property follow the building interpreter)"
        )


# --- placeholders -> intrinsics ---------------------------------------------------------------------------


def _stack_token(name: str) -> str:
    return f"{_OPEN}stack:{name}{_CLOSE}"


def _deploy_token(name: str) -> str:
    return f"{_OPEN}deploy:{name}{_CLOSE}"


def _deploy_values(stage: str) -> dict[str, str]:
    names = ("Region", "Account", "WebSocketApiId", "WebSocketManagementEndpoint", *IDENTITY_PARAMETERS)
    return {"Stage": stage, **{name: _deploy_token(name) for name in names}}


def _deploy_substitutions(stage: str) -> dict[str, str]:
    """``from-deploy:<Name>`` → its Fn::Sub text inside the one stack."""
    return {
        "Region": "${AWS::Region}",
        "Account": "${AWS::AccountId}",
        "WebSocketApiId": f"${{{WEBSOCKET_API}}}",
        "WebSocketManagementEndpoint": f"https://${{{WEBSOCKET_API}}}.execute-api.${{AWS::Region}}.amazonaws.com/{stage}",
        **{name: f"${{{name}}}" for name in IDENTITY_PARAMETERS},
    }


def _sub_text(expression: Any) -> str | None:
    """An output's value as Fn::Sub text (``${X}``, ``${X.Attr}``, or a Sub string without variables
    map); None for anything else (a Join: spliced into lists only)."""
    if isinstance(expression, dict) and len(expression) == 1:
        ((key, value),) = expression.items()
        if key == "Ref":
            return f"${{{value}}}"
        if key == "Fn::GetAtt":
            return f"${{{'.'.join(value)}}}"
        if key == "Fn::Sub" and isinstance(value, str):
            return value
    return None


def _tokens(text: str) -> Iterator[tuple[int, int, str, str]]:
    """(start, end, kind, name) of every placeholder in ``text``."""
    position = 0
    while (start := text.find(_OPEN, position)) >= 0:
        end = text.index(_CLOSE, start + len(_OPEN))
        kind, name = text[start + len(_OPEN) : end].split(":", 1)
        yield start, end + len(_CLOSE), kind, name
        position = end + len(_CLOSE)


class Resolver:
    """Turns the rendered project's placeholders in chalice's template into intrinsics."""

    def __init__(self, stage: str, outputs: Mapping[str, Any]) -> None:
        self._stage = stage
        self._outputs = outputs  # output name → its Value expression in the template
        self._deploy = _deploy_substitutions(stage)

    def _output(self, name: str) -> Any:
        if name not in self._outputs:
            raise PackageError(f"the template has no output {name!r}")
        return copy.deepcopy(self._outputs[name])

    def resolve(self, document: Any) -> Any:
        if isinstance(document, dict):
            return {key: self.resolve(value) for key, value in document.items()}
        if isinstance(document, list):
            items: list[Any] = []
            for item in document:
                spliced = self._splice(item)
                items.extend(spliced if spliced is not None else [self.resolve(item)])
            return items
        if isinstance(document, str) and _OPEN in document:
            return self._string(document)
        return document

    def _splice(self, item: Any) -> list[Any] | None:
        """A list item that is exactly a comma-joined output (PrivateSubnetIds) becomes its parts."""
        if not isinstance(item, str):
            return None
        tokens = list(_tokens(item))
        if len(tokens) != 1 or tokens[0][:2] != (0, len(item)) or tokens[0][2] != "stack":
            return None
        value = self._output(tokens[0][3])
        if isinstance(value, dict) and list(value) == ["Fn::Join"] and value["Fn::Join"][0] == ",":
            return list(value["Fn::Join"][1])
        return None

    def _string(self, text: str) -> Any:
        tokens = list(_tokens(text))
        if len(tokens) == 1 and tokens[0][:2] == (0, len(text)):
            kind, name = tokens[0][2:]
            if kind == "stack":
                return self._output(name)  # exactly one output: its own expression
            if name in IDENTITY_PARAMETERS:
                return {"Ref": name}  # exactly one stack parameter
        pieces: list[str] = []
        position = 0
        for start, end, kind, name in tokens:
            pieces.append(text[position:start].replace("${", "${!"))
            if kind == "deploy":
                if name not in self._deploy:
                    raise PackageError(f"no template value for from-deploy:{name} (in {text!r})")
                pieces.append(self._deploy[name])
            else:
                sub = _sub_text(self._output(name))
                if sub is None:
                    raise PackageError(f"output {name} cannot be part of a string (in {text!r})")
                pieces.append(sub)
            position = end
        pieces.append(text[position:].replace("${", "${!"))
        return {"Fn::Sub": "".join(pieces)}


def leftover_placeholders(document: Any) -> list[str]:
    """Every string of a template that still holds a placeholder of either kind (a packaging bug)."""
    found: list[str] = []
    if isinstance(document, dict):
        for value in document.values():
            found += leftover_placeholders(value)
    elif isinstance(document, list):
        for item in document:
            found += leftover_placeholders(item)
    elif isinstance(document, str) and any(
        marker in document for marker in (_OPEN, deploy.FROM_STACK, deploy.FROM_DEPLOY)
    ):
        found.append(document)
    return found


# --- the merge template ----------------------------------------------------------------------------------


def _gateway_responses(template: Mapping[str, Any]) -> dict[str, Any]:
    """infra/template.yaml's AWS::ApiGateway::GatewayResponse resources as the OpenAPI extension of the
    REST API's body: part of the API's definition, so every deployment of the stage carries them."""
    responses: dict[str, Any] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::ApiGateway::GatewayResponse":
            continue
        properties = resource["Properties"]
        responses[properties["ResponseType"]] = {
            "statusCode": str(properties["StatusCode"]),  # a string in the extension, "404"
            "responseParameters": properties.get("ResponseParameters", {}),
            "responseTemplates": properties.get("ResponseTemplates", {}),
        }
    return responses


def _rest_method_settings(stage: str) -> list[dict[str, Any]]:
    """The REST stage's throttles (what deploy.rest_stage_patch_operations applied after the deploy):
    a default for every method, each method's own (the manual job run is throttled harder), execution
    logging off (it would log whole requests, bearer tokens included)."""
    limits = deploy.stage_limits(stage)
    settings = [
        {
            "ResourcePath": "/*",
            "HttpMethod": "*",
            "ThrottlingRateLimit": float(limits["RestRateLimit"]),
            "ThrottlingBurstLimit": int(limits["RestBurstLimit"]),
            "LoggingLevel": "OFF",
            "DataTraceEnabled": False,
            "MetricsEnabled": False,
        }
    ]
    for path, method in sorted(deploy.rest_methods()):
        rate, burst = deploy.ROUTE_THROTTLES.get((path, method), ("RestRateLimit", "RestBurstLimit"))
        key = deploy._method_key(path, method)  # "/~1api~1v1~1.../GET"
        settings.append(
            {
                "ResourcePath": key.rsplit("/", 1)[0],
                "HttpMethod": method,
                "ThrottlingRateLimit": float(limits[rate]),
                "ThrottlingBurstLimit": int(limits[burst]),
            }
        )
    return settings


def _access_log_arn(log_group: str) -> dict[str, str]:
    # API Gateway wants the log group's ARN without the ":*" that its GetAtt Arn carries.
    return {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${" + log_group + "}"}


def function_logical_ids() -> dict[str, str]:
    """Chalice function name → its logical id in sam.json."""
    from chalice.utils import to_cfn_resource_name

    return {
        name: REST_FUNCTION_ID if name == deploy.REST_FUNCTION else to_cfn_resource_name(name)
        for name in deploy.app_functions()
    }


def merge_template(stage: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """infra/template.yaml turned into the one-stack merge template of ``stage``."""
    from infra.local.tables import load_template

    template = load_template()
    stage_config = config["stages"][stage]
    resources: dict[str, Any] = template["Resources"]
    gateway_responses = _gateway_responses(template)
    for logical_id in [k for k, v in resources.items() if v["Type"] == "AWS::ApiGateway::GatewayResponse"]:
        del resources[logical_id]
    for name in TWO_STACK_PARAMETERS:
        del template["Parameters"][name]
    # The package is built for one stage (function names, environment, limits): its stack takes no other.
    template["Parameters"]["Stage"] = {"Type": "String", "AllowedValues": [stage], "Default": stage}
    # The identity settings the stage's environment takes from the deploy become stack parameters.
    environment_text = json.dumps(config["stages"][stage].get("environment_variables", {}))
    for name, description in IDENTITY_PARAMETERS.items():
        if _deploy_token(name) in environment_text:
            template["Parameters"][name] = {"Type": "String", "Description": description, "MinLength": 1}
    conditions = template["Conditions"]
    del conditions["HasRestApi"]
    del conditions["WafOnRestApi"]
    association = resources["RestWebAclAssociation"]
    association["Condition"] = "WafOn"
    # ${RestAPI.Stage}: SAM's reference to the stage it generates (the association waits for it).
    association["Properties"]["ResourceArn"] = {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${RestAPI}/stages/${RestAPI.Stage}"
    }
    # The layers are artifacts of this package (release.py points ContentUri at their S3 copies).
    resources["YFinanceLayer"] = {
        "Type": "AWS::Serverless::LayerVersion",
        "Properties": {
            "LayerName": {"Fn::Sub": "market-data-${Stage}-yfinance"},
            "Description": "yfinance, pandas, numpy, curl_cffi, lxml for the market-data functions",
            "ContentUri": f"./{YFINANCE_LAYER_ZIP}",
            "CompatibleRuntimes": [f"python{build.PYTHON_VERSION}"],
            "CompatibleArchitectures": ["x86_64"],
            "RetentionPolicy": "Delete",
        },
    }
    if stage_config.get("xray"):
        resources[TRACING_LAYER] = {
            "Type": "AWS::Serverless::LayerVersion",
            "Properties": {
                "LayerName": {"Fn::Sub": "market-data-${Stage}-tracing"},
                "Description": "AWS X-Ray SDK (Powertools' Tracer) for the market-data functions",
                "ContentUri": f"./{TRACING_LAYER_ZIP}",
                "CompatibleRuntimes": [f"python{build.PYTHON_VERSION}"],
                "CompatibleArchitectures": ["x86_64"],
                "RetentionPolicy": "Delete",
            },
        }
    # Access logging needs the account's API Gateway logging role first. When this stack sets it
    # (ApiGatewayAccount, conditional), the APIs wait for it through this always-present handle.
    resources[API_LOGGING_READY] = {
        "Type": "AWS::CloudFormation::WaitConditionHandle",
        "Metadata": {
            "ApiGatewayAccount": {
                "Fn::If": ["CreateApiGatewayLogsRole", {"Ref": "ApiGatewayAccount"}, {"Ref": "AWS::NoValue"}]
            }
        },
    }
    rest_properties: dict[str, Any] = {
        "DefinitionBody": {"x-amazon-apigateway-gateway-responses": gateway_responses},
        "MethodSettings": _rest_method_settings(stage),
        "AccessLogSetting": {
            "DestinationArn": _access_log_arn("RestAccessLogGroup"),
            "Format": deploy.REST_ACCESS_LOG_FORMAT,
        },
        "TracingEnabled": bool(stage_config.get("xray")),  # what `chalice deploy` sets on the stage
    }
    resources[REST_API] = {"DependsOn": [API_LOGGING_READY], "Properties": rest_properties}
    websocket = deploy.websocket_stage_update(stage, "")
    websocket["AccessLogSettings"]["DestinationArn"] = _access_log_arn("WebSocketAccessLogGroup")
    resources[WEBSOCKET_STAGE] = {"DependsOn": [API_LOGGING_READY], "Properties": websocket}
    # What Chalice cannot set: the fan-out worker's retries, maximum event age and failure destination.
    invoke = deploy.fanout_worker_invoke_config(stage, "")
    ids = function_logical_ids()
    resources[FANOUT_INVOKE_CONFIG] = {
        "Type": "AWS::Lambda::EventInvokeConfig",
        "Properties": {
            "FunctionName": {"Ref": ids[deploy.FANOUT_WORKER]},
            "Qualifier": "$LATEST",
            "MaximumRetryAttempts": invoke["MaximumRetryAttempts"],
            "MaximumEventAgeInSeconds": invoke["MaximumEventAgeInSeconds"],
            "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["FanoutFailureQueue", "Arn"]}}},
        },
    }
    # The functions keep the names `chalice deploy` gives them: the policies, the log groups and the
    # dispatcher (settings.fanout_worker_function) name them.
    for function, logical_id in ids.items():
        resources[logical_id] = {
            "Properties": {"FunctionName": deploy.lambda_function_name(stage, function)},
        }
    template["Outputs"]["WebSocketManagementEndpoint"] = {
        "Value": {"Fn::Sub": _deploy_substitutions(stage)["WebSocketManagementEndpoint"]}
    }
    template["Description"] = (
        f"Market-data service, stage {stage}: the functions and APIs (chalice package) merged with "
        "infra/template.yaml (tables, network, Redis, secrets, layers, alarms) by infra/package.py."
    )
    return template


# --- the Chalice project and `chalice package` -------------------------------------------------------


def render_for_package(stage: str, destination: Path) -> dict[str, Any]:
    """The Chalice project of ``stage`` with placeholders where the stack's values go; returns its config."""
    from infra.local.tables import load_template

    outputs = {name: _stack_token(name) for name in load_template()["Outputs"]}
    config, _ = deploy.render_project(stage, outputs, _deploy_values(stage), destination, bundle_tracing_sdk=False)
    stage_config = config["stages"][stage]
    if stage_config.get("xray"):
        stage_config["layers"] = [*stage_config.get("layers", []), _stack_token(f"local:{TRACING_LAYER}")]
    (destination / ".chalice" / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (destination / ".chalice" / "deployed").mkdir(exist_ok=True)
    for stale in (destination / ".chalice" / "deployed").iterdir():
        stale.unlink()  # packaging never reads a `chalice deploy` record
    return config


def _offline_pip_env(wheelhouse: Path) -> dict[str, str]:
    """Chalice's pip runs see only the wheelhouse: the versions resolved (and fetched) just before."""
    env = {**os.environ, "PIP_NO_INPUT": "1", "PIP_NO_INDEX": "1"}
    env["PIP_FIND_LINKS"] = " ".join(filter(None, [str(wheelhouse), os.environ.get("PIP_FIND_LINKS", "")]))
    env.update({"AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1"), "AWS_EC2_METADATA_DISABLED": "true"})
    return env


def chalice_package(project: Path, stage: str, merge: Path, out: Path) -> None:
    # `python -m chalice` has no __main__: the console script's entry point with our interpreter.
    command = [sys.executable, "-c", "import sys; from chalice.cli import main; sys.exit(main())"]
    completed = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [
            *command,
            "--project-dir",
            str(project),
            "package",
            "--stage",
            stage,
            "--merge-template",
            str(merge),
            str(out),
        ],
        env=_offline_pip_env(build.WHEELHOUSE),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        raise PackageError(f"chalice package failed:\n{output}")
    # Chalice only warns (and packages without them) when it finds no Lambda-compatible wheel.
    if "Could not install dependencies" in output:
        raise PackageError(f"chalice package left dependencies out:\n{output}")


# --- the function zip ------------------------------------------------------------------------------------


def _remove_runtime_provided(site: Path) -> list[str]:
    """Delete the distributions the Lambda runtime provides (their RECORD's files and dist-info)."""
    removed = []
    for dist_info in sorted(site.glob("*.dist-info")):
        name = build.canonical_name(dist_info.name.split("-")[0])
        if name not in RUNTIME_PROVIDED:
            continue
        with (dist_info / "RECORD").open(encoding="utf-8", newline="") as record:
            files = [row[0] for row in csv.reader(record) if row and row[0]]
        for relative in files:
            path = (site / relative).resolve()
            if site.resolve() in path.parents:
                path.unlink(missing_ok=True)
        shutil.rmtree(dist_info, ignore_errors=True)
        removed.append(name)
    for directory in sorted((p for p in site.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    return removed


def has_symbol_table(path: Path) -> bool:
    """Whether an ELF64 little-endian file (a Linux x86_64 extension module) has a static symbol table
    (a section of type SHT_SYMTAB): names for debuggers, never used to load or run the module."""
    with path.open("rb") as handle:
        header = handle.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
            return False
        section_offset = int.from_bytes(header[0x28:0x30], "little")
        entry_size = int.from_bytes(header[0x3A:0x3C], "little")
        count = int.from_bytes(header[0x3C:0x3E], "little")
        handle.seek(section_offset)
        table = handle.read(entry_size * count)
    sht_symtab = 2
    return any(
        int.from_bytes(table[i * entry_size + 4 : i * entry_size + 8], "little") == sht_symtab for i in range(count)
    )


def strip_symbols(root: Path) -> list[str]:
    """Strip the static symbol table of every shipped extension module that has one (`strip
    --strip-unneeded`: the dynamic symbols the loader needs stay). cryptography's Rust module ships with
    its symbols: 14.3 MB, 11.5 MB without them (0.46 MB less zipped). A native crash's backtrace then
    shows addresses instead of function names."""
    stripped = []
    for path in sorted(root.rglob("*.so")):
        if not has_symbol_table(path):
            continue
        strip = shutil.which("strip")
        if strip is None:
            raise PackageError(f"{path.name} needs stripping and `strip` is missing: install binutils")
        subprocess.run([strip, "--strip-unneeded", str(path)], check=True)  # noqa: S603 - fixed arguments
        stripped.append(path.relative_to(root).as_posix())
    return stripped


def compile_tree(root: Path) -> None:
    """Precompile the function's tree (unchecked-hash .pyc, /var/task/... in tracebacks)."""
    try:
        build.compile_bytecode(root, LAMBDA_TASK_ROOT)
    except RuntimeError as exc:
        raise PackageError(str(exc)) from None


def rebuild_function_zip(chalice_zip: Path, destination: Path) -> list[str]:
    """Chalice's zip → the shipped zip: runtime-provided SDK out, bytecode in, reproducible bytes."""
    with tempfile.TemporaryDirectory(prefix="function-zip-") as tmp:
        root = Path(tmp) / "task"
        with zipfile.ZipFile(chalice_zip) as archive:
            archive.extractall(root)
        removed = _remove_runtime_provided(root)
        for relative in PRUNED:
            if not (root / relative).is_dir():
                raise PackageError(f"{relative} is not in the function package any more: update PRUNED")
            shutil.rmtree(root / relative)
        strip_symbols(root)
        compile_tree(root)
        build.write_zip(root, destination, mode=0o644)
    return removed


def modules_without_bytecode(archive: Path) -> list[str]:
    """Every .py of a zip without its __pycache__/<name>.cpython-3XX.pyc."""
    with zipfile.ZipFile(archive) as opened:
        names = set(opened.namelist())
    missing = []
    for name in sorted(names):
        if name.endswith(".py"):
            directory, _, file = name.rpartition("/")
            pyc = f"{directory + '/' if directory else ''}__pycache__/{file[:-3]}.{PYC_TAG}.pyc"
            if pyc not in names:
                missing.append(name)
    return missing


# --- the whole package -----------------------------------------------------------------------------------


def _merged_template(stage: str, work: Path, *, dependencies: bool = True) -> tuple[dict[str, Any], Path]:
    """`chalice package --merge-template` of the stage in ``work``, its placeholders resolved: (the
    template, chalice's zip). ``dependencies=False`` packages the app without requirements.txt (the
    template does not depend on them: a quick build for checks of the template alone)."""
    from infra.local.tables import load_template

    config = render_for_package(stage, work / "project")
    if not dependencies:
        (work / "project" / "requirements.txt").write_text("")
    merge = work / "merge-template.json"
    merge.write_text(json.dumps(merge_template(stage, config), indent=2))
    chalice_package(work / "project", stage, merge, work / "out")
    sam = json.loads((work / "out" / "sam.json").read_text())
    outputs: dict[str, Any] = {name: value["Value"] for name, value in load_template()["Outputs"].items()}
    outputs[f"local:{TRACING_LAYER}"] = {"Ref": TRACING_LAYER}
    resolved = Resolver(stage, outputs).resolve(sam)
    leftovers = leftover_placeholders(resolved)
    if leftovers:
        raise PackageError(f"unresolved placeholders in the template: {leftovers[:5]}")
    return resolved, work / "out" / FUNCTION_ZIP


def _check_stage(stage: str) -> None:
    if stage not in deploy.DEPLOYABLE_STAGES:
        raise PackageError(f"stage {stage!r} is not deployable (one of {', '.join(deploy.DEPLOYABLE_STAGES)})")
    check_python()


def build_template(stage: str) -> dict[str, Any]:
    """The stage's merged template alone (what sam.json holds), without building any artifact."""
    _check_stage(stage)
    with tempfile.TemporaryDirectory(prefix=f"template-{stage}-") as tmp:
        template, _ = _merged_template(stage, Path(tmp), dependencies=False)
    return template


def write_template(template: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(template, indent=2, sort_keys=True) + "\n")


def build_package(stage: str, output_dir: Path | None = None, *, layers: bool = True) -> Artifacts:
    """Write the stage's artifacts into ``output_dir`` (build/<stage>/package/) and return their paths.
    The directory is replaced only after every artifact has been built (a failed build leaves the old one)."""
    _check_stage(stage)
    output = output_dir or package_dir(stage)
    build.fetch(build.resolve(build.FUNCTION_REQUIREMENTS), build.WHEELHOUSE)
    with tempfile.TemporaryDirectory(prefix=f"package-{stage}-") as tmp:
        work = Path(tmp)
        sam, chalice_zip = _merged_template(stage, work)
        staged = work / "artifacts"
        staged.mkdir()
        rebuild_function_zip(chalice_zip, staged / FUNCTION_ZIP)
        if layers:
            build.build_layer(staged)
            if TRACING_LAYER in sam["Resources"]:
                build.build_tracing_layer(staged)
        write_template(sam, staged / TEMPLATE_NAME)
        if output.exists():
            shutil.rmtree(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staged, output)
    layer_files = tuple(sorted(p for p in output.glob("*-layer.zip")))
    return Artifacts(output, output / FUNCTION_ZIP, output / TEMPLATE_NAME, layer_files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, choices=deploy.DEPLOYABLE_STAGES)
    parser.add_argument("--output-dir", type=Path, default=None)
    args = parser.parse_args()
    try:
        artifacts = build_package(args.stage, args.output_dir)
    except PackageError as exc:
        parser.exit(2, f"package refused: {exc}\n")
    for path in (artifacts.function_zip, *artifacts.layers, artifacts.template):
        print(f"{path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}: "
              f"{path.stat().st_size / build.MB:.2f} MB, sha256 {build.sha256_of(path)[:16]}")  # fmt: skip
    size = artifacts.function_zip.stat().st_size
    if size > FUNCTION_ZIP_LIMIT:
        print(f"{FUNCTION_ZIP} is {size / build.MB:.1f} MB: over the {FUNCTION_ZIP_LIMIT / build.MB:.0f} MB budget")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
