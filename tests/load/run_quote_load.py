"""`make load-quotes`: the refresh-ahead acceptance run. Quote readers draw symbols from a Zipf law
(s = 1.1) over the replay universe while the local scheduler runs the quote job; prints the warm hit
rate (reads of symbols already read once in this run), cold first reads separately, and failures.

    python -m tests.load.run_quote_load [--users 50] [--seconds 300] [--seed N] [--quote-job-seconds 60]

Target: warm hit rate >= 99 % and 0 failures (exit status 1 otherwise). The stack is started on
127.0.0.1 with a Redis server of its own (never one already running), its own cache prefix, and a
per-user rate limit high enough not to throttle the simulated readers. Bounded: one locust run of
--seconds, then the stack is stopped.

The run should last several quote TTLs (60 s): entries cached by first reads only expire after 60 s,
so a shorter run measures the TTL, not the refresh-ahead. The quote job runs at its deployed cadence
(rate(1 minute)) unless --quote-job-seconds changes it through LOCAL_SCHEDULE (README "Refresh-ahead").
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from infra.local.lambda_runtime import DEFAULT_WORKERS
from infra.local.run import free_port
from infra.local.token import issue_dev_token
from tests.load.quote_reads import target_met
from tests.load.run_api_load import REPO_ROOT, start_stack, stop_stack


def universe_symbols() -> tuple[list[str], str]:
    """The symbols to read, and where they came from: every symbol of the replay universe trading on the
    replay's start day (REPLAY_START_DAY), so each one is quotable for the whole run."""
    from infra.local.replay.transport import REPLAY_START_DAY_ENV, replay_start_index
    from infra.local.replay.universe import load_universe

    universe = load_universe()
    start = replay_start_index(os.environ.get(REPLAY_START_DAY_ENV), universe.days)
    return sorted(universe.trading_on(start)), f"replay universe, trading on {universe.days[start]}"


def warm_up(host: str, *, timeout_seconds: float = 180.0) -> None:
    """Start every Lambda worker before measuring (their cold starts are not what this run measures):
    concurrent requests to a route that reads no quote, so no symbol is cached or marked hot."""
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 only (the stack we started)
        host + "/api/v1/market/cache/stats",
        headers={"Authorization": f"Bearer {issue_dev_token('warm-up', operator=True)}"},
    )

    def answered() -> bool:
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - as above
                return bool(response.status == 200)
        except (urllib.error.URLError, TimeoutError):
            return False

    deadline = time.monotonic() + timeout_seconds
    with ThreadPoolExecutor(max_workers=2 * DEFAULT_WORKERS) as pool:
        while not all(pool.map(lambda _: answered(), range(2 * DEFAULT_WORKERS))):
            if time.monotonic() > deadline:
                raise SystemExit(f"the local stack did not answer within {timeout_seconds:.0f} s of warm-up")


def run_locust(host: str, users: int, seconds: int, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    report = workdir / "summary.json"
    subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", str(REPO_ROOT / "tests/load/quote_hit_rate_load.py"),
            "--host", host, "--headless", "-u", str(users), "-r", str(max(1, users // 5)), "-t", f"{seconds}s",
            "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "10",
        ],
        cwd=REPO_ROOT,
        env={**os.environ, **env, "QUOTE_LOAD_REPORT": str(report)},
        check=False,
        stdout=subprocess.DEVNULL,
        timeout=seconds + 120,
    )  # fmt: skip
    if not report.exists():
        raise SystemExit("locust wrote no summary (see its output above)")
    summary: dict[str, Any] = json.loads(report.read_text())
    return summary


def rate(hits: int, total: int) -> str:
    return f"{100 * hits / total:.2f} %" if total else "n/a"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--seed", type=int, default=None, help="default: a random one (printed)")
    parser.add_argument("--quote-job-seconds", type=float, default=None, help="default: the deployed rate(1 minute)")
    parser.add_argument("--symbols", default="", help="comma-separated universe instead of the replay universe")
    parser.add_argument(
        "--refresh-max-symbols", type=int, default=None, help="JOB_QUOTE_REFRESH_MAX_SYMBOLS (0: no refresh-ahead)"
    )
    args = parser.parse_args()
    if not (1 <= args.users <= 1000 and 1 <= args.seconds <= 3600):
        raise SystemExit("--users must be 1..1000 and --seconds 1..3600")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    if args.symbols:
        symbols, origin = sorted({s.strip().upper() for s in args.symbols.split(",") if s.strip()}), "--symbols"
    else:
        symbols, origin = universe_symbols()

    redis_port = free_port()
    stack_env = {
        "GATEWAY_HOST": "127.0.0.1",
        # A Redis server of the stack's own: nothing answers on this free port, so the stack starts one there.
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "LOCAL_REDIS_PORT": str(redis_port),
    }
    if args.refresh_max_symbols is not None:
        stack_env["JOB_QUOTE_REFRESH_MAX_SYMBOLS"] = str(args.refresh_max_symbols)
    if args.quote_job_seconds is not None:
        stack_env["LOCAL_SCHEDULE"] = f"refresh_quotes={args.quote_job_seconds:g}s"
    port = free_port()
    process, redis_url = start_stack(port, stack_env)
    host = f"http://127.0.0.1:{port}"
    try:
        warm_up(host)
        with tempfile.TemporaryDirectory() as tmp:
            env = {"QUOTE_LOAD_SYMBOLS": ",".join(symbols), "QUOTE_LOAD_SEED": str(seed)}
            result = run_locust(host, args.users, args.seconds, env, Path(tmp))
    finally:
        stop_stack(process, redis_url)

    cadence = f"every {args.quote_job_seconds:g} s" if args.quote_job_seconds is not None else "rate(1 minute)"
    warm_rate = rate(result["warm_hits"], result["warm_reads"])
    print(f"Quote hit-rate load (Zipf s=1.1), local gateway {host}, replay data, quote job {cadence}")
    print(f"  seed={seed} users={args.users} duration={args.seconds}s universe={len(symbols)} symbols ({origin})")
    if args.refresh_max_symbols is not None:
        print(f"  JOB_QUOTE_REFRESH_MAX_SYMBOLS={args.refresh_max_symbols}")
    print(f"  top ranks: {', '.join(result['top_ranked'])}")
    print(
        f"  requests={result['requests']} (failed {result['failed_requests']}) "
        f"symbol reads={result['reads']} (failed {result['failed_reads']}, "
        f"distinct symbols read {result['distinct_symbols_read']})"
    )
    print(f"  cold first reads={result['cold_reads']} (hits {rate(result['cold_hits'], result['cold_reads'])})")
    print(f"  warm reads={result['warm_reads']} hits={result['warm_hits']} warm hit rate={warm_rate}")
    print(f"  stale served={result['stale_reads']} p50={result['p50_ms']}ms p99={result['p99_ms']}ms")
    if result["warm_missed_symbols"]:
        print(f"  warm misses on: {', '.join(result['warm_missed_symbols'])}")
    for message, count in result["top_errors"]:
        print(f"  failure x{count}: {message}")
    passed = target_met(result)
    print(f"  target (warm hit rate >= 99 %, 0 failures): {'met' if passed else 'NOT met'}")
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main())
