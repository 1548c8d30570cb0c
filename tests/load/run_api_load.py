"""`make load`: start the local stack, run the locust API load test cold then warm, print the numbers.

    python -m tests.load.run_api_load [--users 50] [--seconds 60]

Cold = the cache prefix is empty when the run starts; warm = the same run again right after, with
everything cached. The stack gets its own cache prefix (never touching other data in the Redis it
uses) and a per-user rate limit high enough not to throttle the simulated users (rate limiting has
its own tests). Prints one line per run: requests, failures, req/s, p50, p95, p99.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import redis

from infra.local.run import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "loadtest:"


def start_stack(port: int, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "MOTO_PORT": str(free_port()),
        "CACHE_KEY_PREFIX": PREFIX,
        "USER_RATE_LIMIT_PER_MINUTE": "1000000",
        **(extra_env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local.run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # The banner ends with the Redis line: "  Redis        redis://host:port/db  (...)".
    assert process.stdout is not None
    ready = False
    for line in process.stdout:
        ready = ready or "Local stack ready" in line
        if ready and line.strip().startswith("Redis") and "redis://" in line:
            # Keep draining the stack's output, or its log writes would block once the pipe fills.
            threading.Thread(target=lambda: [None for _ in process.stdout or ()], daemon=True).start()
            return process, "redis://" + line.split("redis://", 1)[1].split()[0]
    raise SystemExit("the local stack exited before it was ready")


def stop_stack(process: subprocess.Popen[str], redis_url: str) -> None:
    """Remove this run's keys (only ours: the prefix), stop the stack as Ctrl-C would, say so."""
    removed = clear_prefix(redis_url)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    print(f"  stack stopped; removed {removed} keys under {PREFIX!r}")


def clear_prefix(redis_url: str) -> int:
    client = redis.Redis.from_url(redis_url)
    removed = 0
    for key in client.scan_iter(match=PREFIX + "*", count=1000):
        removed += int(client.delete(key))
    client.close()
    return removed


def run_locust(host: str, users: int, seconds: int, label: str, workdir: Path) -> dict[str, str]:
    prefix = workdir / label
    subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "tests/load/test_api_load.py"),
            "--host", host, "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
            "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
        ],
        cwd=REPO_ROOT,
        check=False,
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    with (workdir / f"{label}_stats.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return next(row for row in rows if row["Name"] == "Aggregated")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()

    port = free_port()
    process, redis_url = start_stack(port)
    host = f"http://127.0.0.1:{port}"
    try:
        clear_prefix(redis_url)
        with tempfile.TemporaryDirectory() as tmp:
            results = {
                label: run_locust(host, args.users, args.seconds, label, Path(tmp)) for label in ("cold", "warm")
            }
        print(f"API load: {args.users} users, {args.seconds} s per run, local gateway {host}, replay data")
        for label, row in results.items():
            print(
                f"  {label:>4}: requests={row['Request Count']} failures={row['Failure Count']} "
                f"req/s={float(row['Requests/s']):.1f} p50={row['50%']}ms p95={row['95%']}ms p99={row['99%']}ms"
            )
        return 0 if all(row["Failure Count"] == "0" for row in results.values()) else 1
    finally:
        stop_stack(process, redis_url)


if __name__ == "__main__":
    raise SystemExit(main())
