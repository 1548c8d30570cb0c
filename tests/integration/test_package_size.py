"""The prod deployment package fits Chalice's direct upload, and the layer carries the heavy stack.

Renders the prod project the way infra/deploy.py does (with fake stack outputs), runs `chalice package`
on it, and builds the yfinance layer with infra/layer/build.py. Both use the Lambda wheels kept in
.local/pip-cache/lambda-wheels: the first run downloads them from PyPI (about a minute), later runs
reuse them. pip's own HTTP cache is set to .local/pip-cache too, but keeps nothing behind a proxy that
strips Cache-Control, hence the wheelhouse; `chalice package` then installs from it with no index, so
it packages exactly the versions the layer build assumed the function ships.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import pytest

from infra import deploy
from infra.layer import build
from infra.local.tables import load_template
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MB = build.MB
PIP_CACHE = REPO_ROOT / ".local" / "pip-cache"
ACCOUNT = "123456789012"
REGION = "us-east-1"
LAYER_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:market-data-prod-yfinance:1"
JWKS_URL = "https://idp.example.com/.well-known/jwks.json"
HEAVY = ("yfinance", "pandas", "numpy")
LAYER_PACKAGES = ("yfinance", "pandas", "numpy", "curl_cffi")


def fake_output(name: str) -> str:
    """A value shaped like the real output, so cfn-lint's patterns judge the template, not the fake."""
    base = name.removesuffix("Arn").removesuffix("Name").removesuffix("Id")
    slug = "".join(f"-{c.lower()}" if c.isupper() else c for c in base).strip("-")
    fixed = {
        "PrivateSubnetIds": "subnet-a,subnet-b",
        "LambdaSecurityGroupId": "sg-0123456789abcdef0",
        "RedisUrl": "rediss://master.market-data-prod.abc123.use1.cache.amazonaws.com:6379/0",
        "YFinanceLayerArn": LAYER_ARN,
        "AlarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:market-data-prod-alarms",
        "DashboardName": "market-data-prod",
    }
    if name in fixed:
        return fixed[name]
    if name.endswith("TableArn"):
        return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/market-data-prod-{slug.removesuffix('-table')}"
    if name.endswith("SecretArn"):
        return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:market-data-prod/{slug}-AbCdEf"
    if name.endswith("TableName"):
        return f"market-data-prod-{slug.removesuffix('-table')}"
    if name.endswith("Arn"):
        return f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/market-data-prod/{slug}"
    return f"market-data-prod-{slug}"


def fake_outputs() -> dict[str, str]:
    # Every output the template declares (tests/infra/test_deploy_config.py proves the stages use no other).
    return {name: fake_output(name) for name in sorted(load_template()["Outputs"])}


def _offline_pip_env(wheelhouse: Path) -> dict[str, str]:
    """Chalice's pip runs see only the wheelhouse: the versions resolved (and fetched) just before."""
    env = {**os.environ, "PIP_CACHE_DIR": str(PIP_CACHE), "PIP_NO_INPUT": "1", "PIP_NO_INDEX": "1"}
    env["PIP_FIND_LINKS"] = " ".join(filter(None, [str(wheelhouse), os.environ.get("PIP_FIND_LINKS", "")]))
    return env


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


@dataclass(frozen=True)
class Package:
    deployment_zip: Path
    sam: dict[str, Any]
    sam_path: Path
    expected: dict[str, str]  # what the layer build assumes the function ships


@dataclass(frozen=True)
class Layer:
    zip: Path


def _chalice_package(stage: str, work: Path) -> Path:
    """`chalice package --stage <stage>` of the rendered project, offline from the wheelhouse; the out dir."""
    project, out = work / "project", work / "out"
    values = deploy.deploy_values(stage, REGION, ACCOUNT, "abc123", {"JwtJwksUrl": JWKS_URL})
    deploy.render_project(stage, fake_outputs(), values, project)
    env = _offline_pip_env(build.WHEELHOUSE)
    env.update({"AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true"})  # package needs a region
    # `python -m chalice` has no __main__: run the console script's entry point with our interpreter.
    chalice = [sys.executable, "-c", "import sys; from chalice.cli import main; sys.exit(main())"]
    completed = subprocess.run(
        [*chalice, "--project-dir", str(project), "package", "--stage", stage, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, f"chalice package failed:\n{completed.stdout}\n{completed.stderr}"
    # Chalice only warns (and packages without them) when it finds no Lambda-compatible wheel for a dependency.
    assert "Could not install dependencies" not in completed.stdout + completed.stderr, completed.stdout
    return out


def _cfn_lint(template: Path) -> None:
    cfn_lint = REPO_ROOT / ".venv" / "bin" / "cfn-lint"
    assert cfn_lint.exists(), "cfn-lint comes with requirements-dev.txt"
    completed = subprocess.run([str(cfn_lint), str(template)], capture_output=True, text=True, timeout=300, check=False)
    # cfn-lint's exit code is a bit mask: 1 its own failure, 2 errors, 4 warnings, 8 informational.
    assert completed.returncode & 0b11 == 0, completed.stdout + completed.stderr
    if completed.returncode:
        print(f"cfn-lint warnings/info (not failures):\n{completed.stdout}")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Package]:
    work = tmp_path_factory.mktemp("chalice-package")
    assert (REPO_ROOT / "requirements.txt").read_bytes() == build.FUNCTION_REQUIREMENTS.read_bytes()
    # The function's tree resolved for Lambda (as Chalice resolves it: cp311, manylinux up to glibc 2.26).
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIP_CACHE_DIR", str(PIP_CACHE))
        expected = build.resolve(build.FUNCTION_REQUIREMENTS)
        build.fetch(expected, build.WHEELHOUSE)
    out = _chalice_package("prod", work)
    yield Package(
        deployment_zip=out / "deployment.zip",
        sam=json.loads((out / "sam.json").read_text()),
        sam_path=out / "sam.json",
        expected={item.name: item.version for item in expected},
    )
    shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def layer(tmp_path_factory: pytest.TempPathFactory) -> Layer:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PIP_CACHE_DIR", str(PIP_CACHE))  # build_layer's pip runs inherit it
        return Layer(zip=build.build_layer(tmp_path_factory.mktemp("layer")))


def _functions(sam: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in sam["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def test_deployment_package_is_under_the_direct_upload_limit(package: Package) -> None:
    zipped, unzipped = _zip_sizes(package.deployment_zip)
    print(f"deployment.zip: {zipped / MB:.1f} MB zipped, {unzipped / MB:.1f} MB unzipped")
    assert zipped < build.FUNCTION_ZIP_LIMIT, f"deployment.zip is {zipped / MB:.1f} MB: over Lambda's 50 MB"


def test_deployment_package_leaves_the_heavy_stack_to_the_layer(package: Package) -> None:
    top = _top_level(package.deployment_zip)
    assert not top & set(HEAVY), f"the function package carries {sorted(top & set(HEAVY))}"
    assert {"app", "chalicelib", "pydantic", "requests"} <= top
    # Exactly the distributions (and versions) the layer build leaves out as "shipped by the function".
    assert _distributions(package.deployment_zip) == package.expected


def test_every_function_uses_the_layer_on_the_layers_python(package: Package) -> None:
    functions = _functions(package.sam)
    assert functions
    for logical_id, properties in functions.items():
        assert properties.get("Layers") == [LAYER_ARN], logical_id
        # The layer is built for CPython 3.11; Chalice picks the runtime from the packaging interpreter.
        assert properties["Runtime"] == f"python{build.PYTHON_VERSION}", logical_id


def test_sam_template_passes_cfn_lint(package: Package) -> None:
    _cfn_lint(package.sam_path)


def test_the_dev_stage_packages_and_its_sam_template_passes_cfn_lint(package: Package, tmp_path: Path) -> None:
    """Every deployable stage, not only prod (the wheelhouse is warm from the prod package)."""
    out = _chalice_package("dev", tmp_path)
    sam = json.loads((out / "sam.json").read_text())
    assert all(p.get("Layers") == [LAYER_ARN] for p in _functions(sam).values())
    _cfn_lint(out / "sam.json")


def test_layer_carries_the_heavy_stack(layer: Layer, package: Package) -> None:
    top = _top_level(layer.zip, "python/")
    assert set(LAYER_PACKAGES) <= top, f"missing from the layer: {sorted(set(LAYER_PACKAGES) - top)}"
    shipped_twice = set(_distributions(layer.zip, "python/")) & set(package.expected)
    assert not shipped_twice, f"in both the function and the layer: {sorted(shipped_twice)}"


def test_function_and_layer_fit_lambdas_unzipped_limit(
    layer: Layer, package: Package, capsys: pytest.CaptureFixture[str]
) -> None:
    function_zipped, function_unzipped = _zip_sizes(package.deployment_zip)
    layer_zipped, layer_unzipped = _zip_sizes(layer.zip)
    total = function_unzipped + layer_unzipped
    with capsys.disabled():
        print(
            f"\npackage sizes: function {function_zipped / MB:.1f} MB zipped / {function_unzipped / MB:.1f} MB"
            f" unzipped; layer {layer_zipped / MB:.1f} MB zipped / {layer_unzipped / MB:.1f} MB unzipped;"
            f" function + layer {total / MB:.1f} MB unzipped (limit {build.UNZIPPED_LIMIT / MB:.0f} MB)"
        )
    assert total < build.UNZIPPED_LIMIT


def test_the_yahoo_adapter_imports_yfinance_from_the_layer(layer: Layer, package: Package, tmp_path: Path) -> None:
    """Lambda's layout: the function in /var/task, then the layer's python/; no site-packages of ours."""
    task, opt = tmp_path / "task", tmp_path / "opt"
    with zipfile.ZipFile(package.deployment_zip) as opened:
        opened.extractall(task)
    with zipfile.ZipFile(layer.zip) as opened:
        opened.extractall(opt)
    script = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(task)!r}, {str(opt / 'python')!r}]\n"
        "from chalicelib.adapters.providers.yahoo import load_yfinance\n"
        f"load_yfinance({str(tmp_path / 'cache')!r})\n"
        "import curl_cffi.requests, lxml.etree, numpy, pandas, requests, yfinance\n"
        "from yfinance.data import YfData\n"
        "names = ['yfinance', 'pandas', 'numpy', 'curl_cffi', 'lxml', 'requests', 'urllib3', 'dateutil']\n"
        "print(json.dumps({name: sys.modules[name].__file__ for name in names}))\n"
    )
    # -S: no site-packages (neither the venv's nor the user's), as in the Lambda runtime.
    completed = subprocess.run(
        [sys.executable, "-S", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    origins = json.loads(completed.stdout.strip().splitlines()[-1])
    for name in ("yfinance", "pandas", "numpy", "curl_cffi", "lxml"):
        assert origins[name].startswith(str(opt / "python")), (name, origins[name])
    for name in ("requests", "urllib3", "dateutil"):  # in both trees: the function's copy
        assert origins[name].startswith(str(task)), (name, origins[name])
