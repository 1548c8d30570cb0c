"""Benchmark: cold start of the packaged function, the way Lambda starts it, measured in one run.

    python -m tests.bench.bench_coldstart [--runs 15] [--skip-build]      (make bench-coldstart)

1. Builds the prod package (`make package STAGE=prod`: build/prod/package/, infra/package.py) unless
   --skip-build, and unpacks it into a read-only directory: the function zip as /var/task would hold it,
   each layer zip (its python/ directory, as /opt/python), and a directory holding only what the Lambda
   runtime provides (boto3, botocore and what they need: s3transfer, jmespath, dateutil, six) copied
   from the venv and compiled, so nothing else of the venv can leak in.
2. Starts a Redis of its own holding AAPL (FMP's recorded quote) and an RS256 identity provider (JWKS
   over HTTPS on a local port), and sets the prod stage's environment (tests/bench/lambda_env.py).
3. Runs --runs fresh processes per mode, tracing off and on, alternating: `python -I -S -B` (isolated,
   no site-packages, no bytecode written) with sys.path = the unpacked zip, the layers, the runtime's
   directory, then the standard library. Each times `import app` (Lambda's init phase) and the first
   invocation, `app.app(event, context)` with API Gateway's event for GET /api/v1/market/quote/AAPL (a
   cached quote: one JWKS fetch, one RS256 verification, one Redis round trip), and checks it is a 200
   served from the cache. A bare interpreter (`python -I -S -B -c pass`) runs in the same loop.
4. Prints median/min/max of each, and, from three more runs per mode with -X importtime, the ten
   largest import costs of the handler module and what the first invocation imports.
"""

from __future__ import annotations

import argparse
import compileall
import json
import py_compile
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from tests.bench.lambda_env import (
    Identity,
    lambda_context_source,
    make_writable,
    prod_environment,
    quote_event,
    read_only_copy,
    seed_cached_quote,
)
from tests.conftest import REPO_ROOT
from tests.redis_server import own_redis

TARGET_IMPORT_MS = 250.0
TARGET_FIRST_QUOTE_MS = 400.0
PACKAGE_DIR = REPO_ROOT / "build" / "prod" / "package"
FUNCTION_ZIP = "deployment.zip"
# What the Lambda Python runtime provides next to the function (boto3 and its own dependencies).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py")
INVOKE_MARK = "--- first invocation ---"

PROBE = """
import json, sys, time
started, started_cpu = time.perf_counter(), time.process_time()
sys.path[:0] = {paths!r}
import app
imported, imported_cpu = time.perf_counter(), time.process_time()
print({mark!r}, file=sys.stderr, flush=True)
{context}
with open({event_file!r}) as f:
    event = json.load(f)
response = app.app(event, Context())
answered, answered_cpu = time.perf_counter(), time.process_time()
body = json.loads(response["body"])
with open({result_file!r}, "w") as f:
    json.dump({{
        "import_ms": (imported - started) * 1000,
        "first_invocation_ms": (answered - imported) * 1000,
        "import_cpu_ms": (imported_cpu - started_cpu) * 1000,
        "first_invocation_cpu_ms": (answered_cpu - imported_cpu) * 1000,
        "status": response["statusCode"],
        "cached": body.get("cached"),
        "xray_loaded": "aws_xray_sdk" in sys.modules,
        "modules": len(sys.modules),
    }}, f)
"""


def unpack(package: Path, root: Path) -> list[str]:
    """The read-only tree (task, layers, runtime) under ``root``; sys.path entries in Lambda's order."""
    staging = root / "staging"
    task = staging / "task"
    with zipfile.ZipFile(package / FUNCTION_ZIP) as archive:
        archive.extractall(task)
    layer_dirs = []
    for layer_zip in sorted(package.glob("*-layer.zip")):
        target = staging / "layers" / layer_zip.stem
        with zipfile.ZipFile(layer_zip) as archive:
            archive.extractall(target)
        layer_dirs.append(target / "python" if (target / "python").is_dir() else target)
    runtime = staging / "runtime"
    runtime.mkdir(parents=True)
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    for name in RUNTIME_PACKAGES:
        source = site / name
        if source.is_dir():
            shutil.copytree(source, runtime / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, runtime / name)
    # The runtime's own libraries come with bytecode; so do these (the function zip brings its own).
    compileall.compile_dir(str(runtime), quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    final = root / "ro"
    read_only_copy(staging, final)
    shutil.rmtree(staging)
    return [str(final / "task"), *(str(final / p.relative_to(staging)) for p in layer_dirs), str(final / "runtime")]


def probe_once(
    python: str, paths: list[str], env: dict[str, str], workdir: Path, *, importtime: bool = False
) -> dict[str, Any]:
    event_file = workdir / "event.json"
    result_file = workdir / "result.json"
    result_file.unlink(missing_ok=True)
    code = PROBE.format(
        paths=paths,
        mark=INVOKE_MARK,
        context=lambda_context_source(),
        event_file=str(event_file),
        result_file=str(result_file),
    )
    flags = ["-I", "-S", "-B", *(["-X", "importtime"] if importtime else [])]
    started = time.perf_counter()
    done = subprocess.run(
        [python, *flags, "-c", code], env=env, cwd=workdir, capture_output=True, text=True, check=False
    )
    wall = (time.perf_counter() - started) * 1000
    if done.returncode != 0 or not result_file.exists():
        raise SystemExit(f"the probe failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(result_file.read_text())
    result["process_ms"] = wall
    result["stderr"] = done.stderr if importtime else ""
    return result


def bare_interpreter(python: str, workdir: Path) -> float:
    started = time.perf_counter()
    subprocess.run([python, "-I", "-S", "-B", "-c", "pass"], cwd=workdir, check=True)
    return (time.perf_counter() - started) * 1000


def group_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "chalicelib" and len(parts) > 1 else parts[0]


def import_costs(stderr: str) -> tuple[dict[str, float], dict[str, float]]:
    """Self time (ms) per top-level package: while importing the handler, and during the first invocation."""
    phases: list[dict[str, float]] = [defaultdict(float), defaultdict(float)]
    phase = 0
    for line in stderr.splitlines():
        if line.strip() == INVOKE_MARK:
            phase = 1
            continue
        if not line.startswith("import time:") or "|" not in line:
            continue
        fields = line.removeprefix("import time:").split("|")
        if not fields[0].strip().isdigit():
            continue  # the header line
        phases[phase][group_of(fields[2].strip())] += int(fields[0]) / 1000
    return dict(phases[0]), dict(phases[1])


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms  min {min(values):7.1f}  max {max(values):7.1f}"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--skip-build", action="store_true", help="use the package directory as it is")
    parser.add_argument("--package-dir", type=Path, default=PACKAGE_DIR, help="another package (implies --skip-build)")
    args = parser.parse_args()
    package = args.package_dir
    if not args.skip_build and package == PACKAGE_DIR:
        subprocess.run(["make", "-s", "package", "STAGE=prod"], cwd=REPO_ROOT, check=True)
    if not (package / FUNCTION_ZIP).exists():
        raise SystemExit(f"no {package / FUNCTION_ZIP}: run `make package STAGE=prod` first")
    python = sys.executable
    root = Path(tempfile.mkdtemp(prefix="bench-coldstart-"))
    identity = Identity()
    try:
        paths = unpack(package, root)
        with own_redis() as redis_url:
            seed_cached_quote(redis_url)
            workdir = root / "work"
            workdir.mkdir()
            (workdir / "event.json").write_text(json.dumps(quote_event(identity.token())))
            envs = {
                mode: {
                    "PATH": "/usr/bin:/bin",
                    **prod_environment(redis_url, identity, task_root=paths[0], tracing=mode),
                }
                for mode in (False, True)
            }
            report(python, package, paths, envs, workdir, args.runs)
    finally:
        identity.close()
        make_writable(root / "ro")
        shutil.rmtree(root, ignore_errors=True)
    return 0


def report(
    python: str, package: Path, paths: list[str], envs: dict[bool, dict[str, str]], workdir: Path, runs: int
) -> None:
    results: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    bare: list[float] = []
    for _ in range(runs):
        for tracing in (False, True):
            results[tracing].append(probe_once(python, paths, envs[tracing], workdir))
        bare.append(bare_interpreter(python, workdir))
    for tracing, rows in results.items():
        bad = [r for r in rows if r["status"] != 200 or r["cached"] is not True]
        if bad:
            raise SystemExit(f"tracing {'on' if tracing else 'off'}: not a cached 200: {bad[0]}")
    size = (package / FUNCTION_ZIP).stat().st_size / 1024 / 1024
    print(f"Cold start of the packaged prod function ({FUNCTION_ZIP}: {size:.2f} MB), {runs} fresh processes per mode")
    print(
        f"  python -I -S -B, sys.path = unpacked zip (read-only) + {len(paths) - 2} layer(s) + runtime boto3/botocore"
    )
    print(f"  bare interpreter start         {summary(bare)}")
    for tracing in (False, True):
        rows = results[tracing]
        label = "tracing on " if tracing else "tracing off"
        imports = [r["import_ms"] for r in rows]
        first = [r["first_invocation_ms"] for r in rows]
        both = [r["import_ms"] + r["first_invocation_ms"] for r in rows]
        print(f"  {label}: import app           {summary(imports)}")
        print(f"  {label}: first cached quote   {summary(first)}")
        print(f"  {label}: import + first quote {summary(both)}")
        print(f"  {label}: whole process        {summary([r['process_ms'] for r in rows])}")
        cpu_import = [r["import_cpu_ms"] for r in rows]
        cpu_both = [r["import_cpu_ms"] + r["first_invocation_cpu_ms"] for r in rows]
        print(f"  {label}: CPU of import app    {summary(cpu_import)}")
        print(f"  {label}: CPU of import + quote {summary(cpu_both)}")
        print(f"  {label}: X-Ray SDK loaded: {rows[0]['xray_loaded']}; modules loaded: {rows[0]['modules']}")
    off = statistics.median(r["import_ms"] for r in results[False])
    on = statistics.median(r["import_ms"] for r in results[True])
    off_first = statistics.median(r["import_ms"] + r["first_invocation_ms"] for r in results[False])
    on_first = statistics.median(r["import_ms"] + r["first_invocation_ms"] for r in results[True])
    print(
        f"  tracing on adds {on - off:+.1f} ms to the import and {on_first - off_first:+.1f} ms to import + first quote"
    )
    cpu_off = statistics.median(r["import_cpu_ms"] + r["first_invocation_cpu_ms"] for r in results[False])
    cpu_on = statistics.median(r["import_cpu_ms"] + r["first_invocation_cpu_ms"] for r in results[True])
    print(f"  tracing on adds {cpu_on - cpu_off:+.1f} ms of CPU to import + first quote (CPU varies less with load)")
    for tracing in (False, True):
        costs = [
            import_costs(probe_once(python, paths, envs[tracing], workdir, importtime=True)["stderr"]) for _ in range(3)
        ]
        label = "tracing on" if tracing else "tracing off"
        for phase, title in ((0, "importing the handler"), (1, "the first invocation")):
            totals: dict[str, list[float]] = defaultdict(list)
            for run in costs:
                for group, ms in run[phase].items():
                    totals[group].append(ms)
            ranked = sorted(((statistics.median(v), g) for g, v in totals.items()), reverse=True)[:10]
            print(f"  {label}, ten largest import costs of {title} (-X importtime self time, median of 3):")
            print("    " + ", ".join(f"{g} {ms:.1f}" for ms, g in ranked))
    verdicts = [
        ("import median <= 250 ms (tracing off)", off <= TARGET_IMPORT_MS, off),
        ("import + first cached quote <= 400 ms (tracing off)", off_first <= TARGET_FIRST_QUOTE_MS, off_first),
    ]
    for name, ok, value in verdicts:
        print(f"Target {name}: {'meets' if ok else 'misses'} it ({value:.1f} ms)")


if __name__ == "__main__":
    sys.exit(main())
