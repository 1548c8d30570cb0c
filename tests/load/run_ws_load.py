"""`make load` (second half): the WebSocket load test against a local stack of its own.

    python -m tests.load.run_ws_load [--users 500] [--seconds 60] [--spawn-rate 10]

Starts the stack (own cache prefix), runs tests/load/test_websocket_load.py headless: connections ramp
up at --spawn-rate per second, then all of them are held (subscribed, pinging) for --seconds. Prints
one line per step (connect, subscribes, ping) with count, failures and latency percentiles over the
whole run, ramp included, and exits non-zero when any step failed.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

from infra.local.run import free_port
from tests.load.run_api_load import REPO_ROOT, clear_prefix, start_stack, stop_stack


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--spawn-rate", type=int, default=10)
    args = parser.parse_args()

    port = free_port()
    process, redis_url = start_stack(port)
    host = f"http://127.0.0.1:{port}"
    ramp_seconds = -(-args.users // args.spawn_rate)
    try:
        clear_prefix(redis_url)
        with tempfile.TemporaryDirectory() as tmp:
            prefix = Path(tmp) / "ws"
            subprocess.run(
                [
                    sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "tests/load/test_websocket_load.py"),
                    "--host", host, "--headless", "-u", str(args.users), "-r", str(args.spawn_rate),
                    "-t", f"{ramp_seconds + args.seconds}s", "--csv", str(prefix), "--only-summary",
                    "--loglevel", "WARNING", "--stop-timeout", "10",
                ],
                cwd=REPO_ROOT,
                check=False,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip
            with Path(f"{prefix}_stats.csv").open(newline="") as handle:
                rows = list(csv.DictReader(handle))
        print(
            f"WebSocket load: {args.users} connections (ramp {ramp_seconds} s at {args.spawn_rate}/s, then held "
            f"{args.seconds} s), local gateway {host}, replay data"
        )
        for row in rows:
            print(
                f"  {row['Name']:>22}: count={row['Request Count']} failures={row['Failure Count']} "
                f"p50={row['50%']}ms p95={row['95%']}ms p99={row['99%']}ms max={float(row['Max Response Time']):.0f}ms"
            )
        aggregated = next(row for row in rows if row["Name"] == "Aggregated")
        return 0 if aggregated["Failure Count"] == "0" else 1
    finally:
        stop_stack(process, redis_url)


if __name__ == "__main__":
    raise SystemExit(main())
