"""The packaged artifacts (infra/package.py, `make package`): what the function zip holds and what it
leaves to the runtime and the layers, its bytecode, its size, and that the same inputs build the same bytes.

Builds the prod package twice per session (about a minute each on a loaded machine): once as the artifact
under test, once more for the byte-for-byte comparison. The Lambda wheels are kept in
.local/pip-cache/lambda-wheels: the first run on a machine downloads them from PyPI, later runs reuse them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import pytest

from infra import package
from infra.layer import build
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MB = build.MB
STAGE = "prod"
PIP_CACHE = REPO_ROOT / ".local" / "pip-cache"
HEAVY = ("yfinance", "pandas", "numpy")
LAYER_PACKAGES = ("yfinance", "pandas", "numpy", "curl_cffi")
# Never in the function zip: the runtime's SDK, and the X-Ray SDK (the tracing layer's).
NOT_SHIPPED = ("boto3", "botocore", "s3transfer", "jmespath", "aws_xray_sdk", "wrapt")
# What the Lambda Python runtime provides besides our code: boto3 and its dependencies.
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six")


@dataclass(frozen=True)
class Built:
    artifacts: package.Artifacts
    again: package.Artifacts  # a second build of the same inputs

    @property
    def zip(self) -> Path:
        return self.artifacts.function_zip

    def layer(self, name: str) -> Path:
        return self.artifacts.directory / name


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIP_CACHE_DIR", str(PIP_CACHE))  # the pip runs inherit it
        first = package.build_package(STAGE, tmp_path_factory.mktemp("package") / "package")
    # Again as `make package` runs it, in a process of its own, through the venv at another path (the
    # interpreter's path ends up in pip's console scripts; a process's state in marshal's output).
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "venv").symlink_to(REPO_ROOT / ".venv")
    again_dir = elsewhere / "package"
    completed = subprocess.run(
        [
            str(elsewhere / "venv" / "bin" / "python"),
            "-m",
            "infra.package",
            "--stage",
            STAGE,
            "--output-dir",
            str(again_dir),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PIP_CACHE_DIR": str(PIP_CACHE)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    layers = tuple(sorted(again_dir.glob("*-layer.zip")))
    again = package.Artifacts(again_dir, again_dir / package.FUNCTION_ZIP, again_dir / package.TEMPLATE_NAME, layers)
    return Built(first, again)


def _zip_sizes(archive: Path) -> tuple[int, int]:
    with zipfile.ZipFile(archive) as opened:
        return archive.stat().st_size, sum(info.file_size for info in opened.infolist())


def _top_level(archive: Path, prefix: str = "") -> set[str]:
    with zipfile.ZipFile(archive) as opened:
        names = [name.removeprefix(prefix) for name in opened.namelist() if name.startswith(prefix)]
    return {name.split("/", 1)[0].removesuffix(".py") for name in names}


def _distributions(archive: Path, prefix: str = "") -> dict[str, str]:
    """name → version of every ``*.dist-info`` at the archive's top level (under ``prefix``)."""
    found: dict[str, str] = {}
    with zipfile.ZipFile(archive) as opened:
        for name in opened.namelist():
            parts = name.removeprefix(prefix).split("/")
            if name.startswith(prefix) and len(parts) == 2 and parts[1] == "METADATA":
                headers = HeaderParser().parsestr(opened.read(name).decode("utf-8", errors="replace"))
                found[build.canonical_name(headers["Name"])] = headers["Version"]
    return found


def test_the_function_zip_is_at_most_12_mb(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    zipped, unzipped = _zip_sizes(built.zip)
    with capsys.disabled():
        print(f"\n{package.FUNCTION_ZIP}: {zipped / MB:.2f} MB zipped, {unzipped / MB:.1f} MB unzipped")
    assert zipped <= package.FUNCTION_ZIP_LIMIT, f"{zipped / MB:.2f} MB"


def test_the_function_zip_leaves_the_sdks_to_the_runtime_and_the_tracing_layer(built: Built) -> None:
    top = _top_level(built.zip)
    assert not top & set(NOT_SHIPPED), sorted(top & set(NOT_SHIPPED))
    assert not {build.canonical_name(name) for name in NOT_SHIPPED} & set(_distributions(built.zip))
    assert not top & set(HEAVY), sorted(top & set(HEAVY))
    assert {"app", "chalicelib", "chalice", "pydantic", "pydantic_core", "jwt", "cryptography", "redis"} <= top
    # Exactly the distributions (and versions) the layer builds treat as "shipped by the function".
    assert _distributions(built.zip) == build.function_distributions()


@pytest.mark.parametrize("name", [package.FUNCTION_ZIP, package.YFINANCE_LAYER_ZIP, package.TRACING_LAYER_ZIP])
def test_every_module_has_unchecked_hash_bytecode_for_the_runtimes_python(built: Built, name: str) -> None:
    """The function zip and the layers alike: Lambda's code and layer directories are read-only."""
    assert sys.version_info[:2] == (3, 11)  # the runtime's (package.check_python refuses anything else)
    archive = built.layer(name)
    assert package.modules_without_bytecode(archive) == []
    with zipfile.ZipFile(archive) as opened:
        sources = [source for source in opened.namelist() if source.endswith(".py")]
        assert len(sources) > 100
        for source in sources:
            directory, _, file = source.rpartition("/")
            cached = (
                f"{directory}/__pycache__/{file[:-3]}.cpython-311.pyc"
                if directory
                else f"__pycache__/{file[:-3]}.cpython-311.pyc"
            )
            pyc = opened.read(cached)
            # PEP 552: magic, flags (bit 0 hash-based, bit 1 check_source), then the source's hash.
            assert pyc[:4] == importlib.util.MAGIC_NUMBER, source
            assert int.from_bytes(pyc[4:8], "little") == 0b01, source  # hash-based, never checked
            assert pyc[8:16] == importlib.util.source_hash(opened.read(source)), source
        # Nothing stray: no bytecode of another interpreter.
        stray = [n for n in opened.namelist() if n.endswith(".pyc") and ".cpython-311." not in n]
        assert stray == []


def test_two_builds_of_the_same_inputs_are_byte_identical(built: Built) -> None:
    """One in this process, one by `python -m infra.package` through the venv at another path."""
    names = sorted(path.name for path in built.artifacts.directory.iterdir())
    assert names == ["deployment.zip", "sam.json", "tracing-layer.zip", "yfinance-layer.zip"]
    assert sorted(path.name for path in built.again.directory.iterdir()) == names
    for name in names:
        first, second = built.artifacts.directory / name, built.again.directory / name
        assert first.read_bytes() == second.read_bytes(), name
    with zipfile.ZipFile(built.zip) as opened:
        infos = opened.infolist()
    assert [i.filename for i in infos] == sorted((i.filename for i in infos), key=lambda name: name.split("/"))
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos} == {0o100644}


def test_the_shipped_template_is_the_merged_template_the_infra_tests_check(built: Built) -> None:
    """tests/infra/test_packaged_template.py checks package.build_template(stage): the same document."""
    assert json.loads(built.artifacts.template.read_text()) == package.build_template(STAGE)


def test_the_layers_carry_yfinance_and_the_xray_sdk_and_nothing_the_function_ships(built: Built) -> None:
    yfinance = built.layer(package.YFINANCE_LAYER_ZIP)
    tracing = built.layer(package.TRACING_LAYER_ZIP)
    assert set(LAYER_PACKAGES) <= _top_level(yfinance, "python/")
    assert set(_distributions(tracing, "python/")) == {"aws-xray-sdk", "wrapt"}
    shipped = set(_distributions(built.zip))
    for layer in (yfinance, tracing):
        in_layer = set(_distributions(layer, "python/"))
        assert not in_layer & shipped, sorted(in_layer & shipped)
        assert not in_layer & build.RUNTIME_PROVIDED, sorted(in_layer & build.RUNTIME_PROVIDED)


def test_function_and_layers_fit_lambdas_unzipped_limit(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    sizes = {path.name: _zip_sizes(path) for path in (built.zip, *built.artifacts.layers)}
    total = sum(unzipped for _, unzipped in sizes.values())
    with capsys.disabled():
        listed = "; ".join(
            f"{name} {z / MB:.2f} MB zipped / {u / MB:.1f} MB unzipped" for name, (z, u) in sizes.items()
        )
        print(f"\npackage sizes: {listed}; together {total / MB:.1f} MB unzipped (limit 250 MB)")
    assert total < build.UNZIPPED_LIMIT


@pytest.fixture(scope="session")
def lambda_layout(built: Built, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Lambda's layout, read-only: the function in task/, each layer's python/, and a directory holding only
    the runtime's boto3 and its dependencies (symlinks to this venv's copies)."""
    root = tmp_path_factory.mktemp("lambda")
    layout = {"task": root / "task", "yfinance": root / "yfinance", "tracing": root / "tracing", "sdk": root / "sdk"}
    for name, archive in (
        ("task", built.zip),
        ("yfinance", built.layer(package.YFINANCE_LAYER_ZIP)),
        ("tracing", built.layer(package.TRACING_LAYER_ZIP)),
    ):
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(layout[name])
    layout["sdk"].mkdir()
    for module in RUNTIME_MODULES:
        spec = importlib.util.find_spec(module)
        assert spec is not None, module
        assert spec.origin is not None, module
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (layout["sdk"] / source.name).symlink_to(source)
    for path in (layout["task"], layout["yfinance"], layout["tracing"]):
        for item in (path, *path.rglob("*")):
            if not item.is_symlink():
                item.chmod(item.stat().st_mode & ~0o222)  # Lambda's code directories are read-only
    return {**layout, "yfinance": layout["yfinance"] / "python", "tracing": layout["tracing"] / "python"}


def _run_in_lambda_layout(layout: dict[str, Path], script: str, environment: dict[str, str]) -> dict[str, Any]:
    path = [str(layout[name]) for name in ("task", "yfinance", "tracing", "sdk")]
    bootstrap = f"import sys; sys.path[:0] = {path!r}\n" + script
    # -I: no environment-driven paths, no user site; -S: no site-packages (the venv's); -B: write no .pyc.
    completed = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", bootstrap],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": os.environ.get("PATH", "/usr/bin"), **environment},
        cwd=layout["task"],
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


PROD_ENVIRONMENT = {
    "STAGE": "prod",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "market-data",
    "POWERTOOLS_METRICS_NAMESPACE": "MarketData",
    "MARKET_DATA_SOURCE": "live",
    "JWT_ALGORITHM": "RS256",
    "JWT_JWKS_URL": "https://idp.example.com/.well-known/jwks.json",
    "JWT_ISSUER": "https://idp.example.com/",
    "JWT_AUDIENCE": "market-data-api",
    "CORS_ALLOWED_ORIGINS": "https://dashboard.example.com",
    "REDIS_URL": "redis://127.0.0.1:1/0",
}

FIRST_REQUEST = """
import importlib, json, pkgutil, sys
import app, chalicelib
modules = [m.name for m in pkgutil.walk_packages(chalicelib.__path__, "chalicelib.")]
for name in modules:
    importlib.import_module(name)
event = {
    "resource": "/api/v1/openapi.json", "path": "/api/v1/openapi.json", "httpMethod": "GET",
    "headers": {"Host": "api.example.com"}, "multiValueHeaders": {"Host": ["api.example.com"]},
    "queryStringParameters": None, "multiValueQueryStringParameters": None, "pathParameters": None,
    "stageVariables": None, "body": None, "isBase64Encoded": False,
    "requestContext": {"resourcePath": "/api/v1/openapi.json", "httpMethod": "GET", "stage": "prod",
                       "path": "/prod/api/v1/openapi.json", "requestId": "r-1", "identity": {"sourceIp": "192.0.2.1"}},
}
class Context:
    function_name = "market-data-prod"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:market-data-prod"
    aws_request_id = "r-1"
    def get_remaining_time_in_millis(self):
        return 20000
response = app.app(event, Context())
# RS256 through pyjwt and the stripped cryptography module, as prod verifies tokens.
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
claims = jwt.decode(jwt.encode({"sub": "u-1"}, key, algorithm="RS256"), key.public_key(), algorithms=["RS256"])
# What the tracer imports when tracing is on (it is built on the first traced request only:
# chalicelib/observability.py), from the tracing layer.
import aws_xray_sdk.core
names = ("app", "pydantic", "redis", "cryptography", "aws_lambda_powertools", "aws_xray_sdk", "botocore")
origins = {name: sys.modules[name].__file__ for name in names}
print(json.dumps({"status": response["statusCode"], "paths": len(json.loads(response["body"])["paths"]),
                  "modules": len(modules), "claims": claims, "origins": origins}))
"""


def test_the_app_imports_and_serves_a_first_request_from_the_artifacts_alone(lambda_layout: dict[str, Path]) -> None:
    """Nothing the zip leaves out (the runtime's SDK, the pruned subpackages) is missing: the app and every
    chalicelib module import from the read-only unpacked zip, the layers and the runtime's boto3 only, a
    public route answers, and an RS256 token verifies."""
    result = _run_in_lambda_layout(lambda_layout, FIRST_REQUEST, PROD_ENVIRONMENT)
    assert result["status"] == 200
    assert result["paths"] > 10
    assert result["modules"] > 50
    assert result["claims"] == {"sub": "u-1"}
    origins = result["origins"]
    for name in ("app", "pydantic", "redis", "cryptography", "aws_lambda_powertools"):
        assert origins[name].startswith(str(lambda_layout["task"])), (name, origins[name])
    assert origins["aws_xray_sdk"].startswith(str(lambda_layout["tracing"]))
    assert origins["botocore"].startswith(str(lambda_layout["sdk"]))


def test_the_yahoo_adapter_imports_yfinance_from_its_layer(lambda_layout: dict[str, Path], tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "from chalicelib.adapters.providers.yahoo import load_yfinance\n"
        f"load_yfinance({str(tmp_path / 'cache')!r})\n"
        "import curl_cffi.requests, lxml.etree, numpy, pandas, requests, yfinance\n"
        "from yfinance.data import YfData\n"
        "names = ['yfinance', 'pandas', 'numpy', 'curl_cffi', 'lxml', 'requests', 'urllib3', 'dateutil']\n"
        "print(json.dumps({name: sys.modules[name].__file__ for name in names}))\n"
    )
    origins = _run_in_lambda_layout(lambda_layout, script, {})
    for name in ("yfinance", "pandas", "numpy", "curl_cffi", "lxml", "dateutil"):
        assert origins[name].startswith(str(lambda_layout["yfinance"])), (name, origins[name])
    for name in ("requests", "urllib3"):  # in both trees: the function's copy
        assert origins[name].startswith(str(lambda_layout["task"])), (name, origins[name])
