"""Build the yfinance Lambda layer: ``python -m infra.layer.build [--output-dir DIR]``.

Chalice uploads the function package directly (50 MB zipped at most) and yfinance's stack alone zips to
about 52 MB, so infra/layer/requirements.txt goes into a layer instead, published from S3 by
infra/deploy.py and attached through the stage config's ``layers`` (``from-stack:YFinanceLayerArn``).

The layer is built for Lambda's platform, not this machine's: CPython 3.11 on x86_64 (the runtime
Chalice picks from the local interpreter, python3.11), binary wheels only. The python3.11 runtime runs
on Amazon Linux 2 (glibc 2.26), so manylinux wheels up to glibc 2.26 are accepted: pip treats each
``--platform`` as a literal tag, hence the list (manylinux2014 brings in manylinux2010/1).

Lambda puts a layer's ``python/`` on sys.path *after* the function's own directory, so a distribution
in both trees would be shadowed by the function's copy at best, and mixed with it at worst. The
function package therefore keeps everything that requirements.txt needs (requests, urllib3, certifi,
cffi, python-dateutil, ...): the layer is resolved with the function's exact versions as constraints,
and those distributions are left out of it. Lambda's limit on the function and its layers
together is 250 MB unzipped.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
LAYER_REQUIREMENTS = REPO_ROOT / "infra" / "layer" / "requirements.txt"
FUNCTION_REQUIREMENTS = REPO_ROOT / "requirements.txt"
LAYER_ZIP_NAME = "yfinance-layer.zip"
# The X-Ray SDK (Powertools' Tracer needs it when tracing is on) in a layer of its own: its botocore
# dependency is the Lambda runtime's, so the function package ships neither (infra/package.py).
TRACING_REQUIREMENTS = REPO_ROOT / "infra" / "layer" / "tracing-requirements.txt"
TRACING_LAYER_ZIP_NAME = "tracing-layer.zip"
TRACING_PACKAGES = frozenset({"aws-xray-sdk", "wrapt"})
# What the Lambda Python runtime provides (boto3 and what it needs): never shipped in the function or a layer.
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath"})
# Lambda wheels kept between builds (.local is git-ignored; `make clean` empties it).
WHEELHOUSE = REPO_ROOT / ".local" / "pip-cache" / "lambda-wheels"

PYTHON_VERSION = "3.11"
LAMBDA_GLIBC_MINOR = 26  # python3.11 runtime: Amazon Linux 2, glibc 2.26
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(17, LAMBDA_GLIBC_MINOR + 1)] + ["manylinux2014_x86_64"]

MB = 1024 * 1024
FUNCTION_ZIP_LIMIT = 50 * MB  # direct upload of the deployment package (what `chalice deploy` does)
UNZIPPED_LIMIT = 250 * MB  # function + all its layers, unzipped

# Packages whose bundled `tests` directories are dropped: nothing imports them at run time (numpy.testing,
# a package of its own rather than a tests directory, stays).
STRIPPED_TEST_DIRS = ("pandas", "numpy")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# Where Lambda mounts a layer's python/ directory (the file names in tracebacks of precompiled modules).
LAYER_PYTHON_ROOT = "/opt/python"
ZIP_LEVEL = 6  # zlib's default: 9 saves 0.3 MB on the layer and takes four times as long


def canonical_name(name: str) -> str:
    """PEP 503 normalisation: ``Typing_Extensions`` and ``typing-extensions`` are one distribution."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_target_arguments() -> list[str]:
    """The pip options that select wheels for Lambda's python3.11 on x86_64 rather than this machine."""
    arguments = ["--implementation", "cp", "--python-version", PYTHON_VERSION, "--only-binary=:all:"]
    for platform in PLATFORMS:
        arguments += ["--platform", platform]
    return arguments


def _pip(*arguments: str) -> None:
    # Our own interpreter and fixed arguments: nothing here comes from outside.
    subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *arguments],
        check=True,
        env={**os.environ, "PIP_NO_INPUT": "1"},
    )


@dataclass(frozen=True)
class Resolved:
    """One distribution of a tree resolved for Lambda: what to install and the wheel it comes from."""

    name: str  # canonical
    version: str
    filename: str
    sha256: str | None

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


def resolve(requirements: Path, constraints: Path | None = None) -> list[Resolved]:
    """``requirements`` resolved for Lambda's platform (a dry run: metadata only, nothing installed).

    Remembered per process for the same files with the same contents (the test and the layer build both
    ask for the function's tree)."""
    key = (str(requirements.resolve()), requirements.read_bytes())
    constraint_key = (str(constraints.resolve()), constraints.read_bytes()) if constraints else None
    return list(_resolve(key, constraint_key))


@functools.lru_cache(maxsize=8)
def _resolve(requirements: tuple[str, bytes], constraints: tuple[str, bytes] | None) -> tuple[Resolved, ...]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        extra = ["-c", constraints[0]] if constraints else []
        _pip(
            "install",
            "--quiet",
            "--dry-run",
            "--ignore-installed",
            "--report",
            str(report),
            *pip_target_arguments(),
            "-r",
            requirements[0],
            *extra,
        )
        installs = json.loads(report.read_text())["install"]
    resolved = []
    for item in installs:
        info = item["download_info"]
        resolved.append(
            Resolved(
                name=canonical_name(item["metadata"]["name"]),
                version=item["metadata"]["version"],
                filename=unquote(urlsplit(info["url"]).path.rsplit("/", 1)[-1]),
                sha256=info.get("archive_info", {}).get("hashes", {}).get("sha256"),
            )
        )
    return tuple(sorted(resolved, key=lambda r: r.name))


def function_distributions(requirements: Path = FUNCTION_REQUIREMENTS) -> dict[str, str]:
    """Every distribution the function package ships (requirements.txt resolved for Lambda, minus what the
    runtime provides): name → version."""
    return {item.name: item.version for item in resolve(requirements) if item.name not in RUNTIME_PROVIDED}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(resolved: list[Resolved], wheelhouse: Path) -> None:
    """Download into ``wheelhouse`` the wheels it does not hold yet (checked against the index's sha256).

    pip's own HTTP cache is not enough: it keeps nothing when a proxy strips the Cache-Control headers."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    missing = []
    for item in resolved:
        cached = wheelhouse / item.filename
        if cached.is_file() and (item.sha256 is None or sha256_of(cached) == item.sha256):
            continue
        cached.unlink(missing_ok=True)
        missing.append(item.pin)
    if missing:
        _pip("download", "--quiet", "--no-deps", "--dest", str(wheelhouse), *pip_target_arguments(), *missing)


def _installed_distributions(site: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for dist_info in site.glob("*.dist-info"):
        metadata = (dist_info / "METADATA").read_text(encoding="utf-8", errors="replace")
        match = re.search(r"^Name:\s*(\S+)", metadata, re.MULTILINE)
        name = match.group(1) if match else dist_info.name.split("-")[0]
        found[canonical_name(name)] = dist_info
    return found


def _remove_distribution(site: Path, dist_info: Path) -> None:
    """Delete every file an installed distribution's RECORD lists, its emptied directories, and the dist-info."""
    directories: set[Path] = set()
    with (dist_info / "RECORD").open(encoding="utf-8", newline="") as record:
        relatives = [row[0] for row in csv.reader(record) if row and row[0]]  # path,hash,size
    for relative in relatives:
        path = (site / relative).resolve()
        if site.resolve() not in path.parents:
            continue  # ../../bin/... scripts: outside the layer's python/ tree
        path.unlink(missing_ok=True)
        directories.update(parent for parent in path.parents if site.resolve() in parent.parents)
    shutil.rmtree(dist_info, ignore_errors=True)
    for directory in sorted(directories, key=lambda p: len(p.parts), reverse=True):
        if directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()


def _strip(site: Path) -> None:
    for cache in list(site.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts: nothing runs them in Lambda
    for package in STRIPPED_TEST_DIRS:
        for tests in list((site / package).rglob("tests")):
            if tests.is_dir():
                shutil.rmtree(tests)
    _prune_records(site)


def _prune_records(site: Path) -> None:
    """Each RECORD lists only the files the layer ships. pip's console scripts (../../bin/..., removed
    above) carry the building interpreter's path in their shebang, so their RECORD hashes would make the
    same layer's bytes depend on where the venv lives."""
    for record in sorted(site.glob("*.dist-info/RECORD")):
        with record.open(encoding="utf-8", newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
        kept = [row for row in rows if not row[0].startswith("../") and (site / row[0]).exists()]
        with record.open("w", encoding="utf-8", newline="") as handle:
            csv.writer(handle).writerows(kept)


def compile_bytecode(root: Path, ddir: str) -> None:
    """Precompile every module under ``root`` for this interpreter: unchecked-hash .pyc files (PEP 552:
    never compared with the source's mtime, which a zip does not keep faithfully), tracebacks naming
    ``ddir``/... (Lambda's path, fixed so the bytes do not depend on the build directory). Lambda's code
    and layer directories are read-only: without them every cold start compiles what it imports.

    In a fresh interpreter with a fixed hash seed: marshal's output depends on the compiling process's
    state (set constants are written in hash order; an object shared elsewhere in the process gets a
    back-reference), so compiling inside a long-running process would not give the same bytes twice."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" != PYTHON_VERSION:
        raise RuntimeError(f"bytecode for python{PYTHON_VERSION} needs that interpreter, not {sys.version.split()[0]}")
    for cache in list(root.rglob("__pycache__")):
        shutil.rmtree(cache)
    script = (
        "import compileall, py_compile, sys\n"
        "ok = compileall.compile_dir(sys.argv[1], ddir=sys.argv[2], quiet=2, workers=1,"
        " invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
        "sys.exit(0 if ok else 1)\n"
    )
    completed = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
        [sys.executable, "-I", "-c", script, str(root), ddir],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"compileall failed in {root}:\n{completed.stdout}{completed.stderr}")


def directory_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def write_zip(root: Path, destination: Path, prefix: str = "", *, mode: int | None = None) -> None:
    """Zip ``root``'s files in sorted order with fixed timestamps and modes: the same tree, the same bytes.
    ``mode`` fixes every file's mode (else 0755 for executables, 0644 for the rest)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    files = sorted(path for path in root.rglob("*") if path.is_file())
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=ZIP_LEVEL) as archive:
        for path in files:
            info = zipfile.ZipInfo(prefix + path.relative_to(root).as_posix(), date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            file_mode = mode if mode is not None else (0o755 if path.stat().st_mode & 0o111 else 0o644)
            info.external_attr = (0o100000 | file_mode) << 16
            info.create_system = 3  # Unix, so the modes above are honoured
            archive.writestr(info, path.read_bytes(), compresslevel=ZIP_LEVEL)
    partial.replace(destination)


def zip_unzipped_size(archive: Path) -> int:
    with zipfile.ZipFile(archive) as opened:
        return sum(info.file_size for info in opened.infolist())


def build_layer(
    output_dir: Path = REPO_ROOT / "dist",
    *,
    wheelhouse: Path = WHEELHOUSE,
    requirements: Path = LAYER_REQUIREMENTS,
    zip_name: str = LAYER_ZIP_NAME,
    only: frozenset[str] | None = None,
    bytecode: bool = True,
) -> Path:
    """Build ``<output_dir>/<zip_name>`` (its code under ``python/``) and return its path.

    The layer's tree is resolved with the function's versions as constraints; what the function already
    ships (and what the runtime provides) is left out, and only the rest is installed (from the
    wheelhouse, exact pins, no index). ``only``: install just these distributions of the tree.
    ``bytecode``: precompile it for the runtime's Python (needs this interpreter to be that version)."""
    shipped = function_distributions()
    with tempfile.TemporaryDirectory(prefix="yfinance-layer-") as tmp:
        constraints = Path(tmp) / "function-constraints.txt"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(shipped.items())))
        layer_only = [
            item
            for item in resolve(requirements, constraints)
            if item.name not in shipped and item.name not in RUNTIME_PROVIDED and (only is None or item.name in only)
        ]
        fetch(layer_only, wheelhouse)
        site = Path(tmp) / "layer" / "python"
        _pip(
            "install",
            "--quiet",
            "--no-compile",
            "--no-deps",
            "--no-index",
            "--find-links",
            str(wheelhouse),
            "--target",
            str(site),
            *pip_target_arguments(),
            *(item.pin for item in layer_only),
        )
        # Belt and braces: nothing the function ships may reach the layer (it would come second on sys.path).
        for name, dist_info in _installed_distributions(site).items():
            if name in shipped or name in RUNTIME_PROVIDED:
                _remove_distribution(site, dist_info)
        _strip(site)
        if bytecode:
            compile_bytecode(site, LAYER_PYTHON_ROOT)
        destination = output_dir / zip_name
        write_zip(site, destination, prefix="python/")
    return destination


def build_tracing_layer(output_dir: Path = REPO_ROOT / "dist", *, wheelhouse: Path = WHEELHOUSE) -> Path:
    """``<output_dir>/tracing-layer.zip``: the X-Ray SDK and wrapt (its botocore is the runtime's)."""
    return build_layer(
        output_dir,
        wheelhouse=wheelhouse,
        requirements=TRACING_REQUIREMENTS,
        zip_name=TRACING_LAYER_ZIP_NAME,
        only=TRACING_PACKAGES,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "dist")
    args = parser.parse_args()
    archive = build_layer(args.output_dir)
    zipped = archive.stat().st_size
    unzipped = zip_unzipped_size(archive)
    print(f"{archive}: {zipped / MB:.1f} MB zipped, {unzipped / MB:.1f} MB unzipped")
    print(f"Lambda: function + layers must stay under {UNZIPPED_LIMIT / MB:.0f} MB unzipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
