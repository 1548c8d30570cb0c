"""Benchmark: warm in-process invocations of a cached quote, and where their time goes, in one run.

    python -m tests.bench.bench_handler [--invocations 3000] [--warmup 200]   (make bench-handler)

Starts a Redis of its own holding AAPL (FMP's recorded quote) and a local RS256 identity provider, sets
the prod stage's environment (tests/bench/lambda_env.py; tracing off), imports app.py and calls
``app.app(event, context)`` with API Gateway's event for ``GET /api/v1/market/quote/AAPL``, as the Lambda
runtime does in a warm container. Prints wall and CPU time per invocation (p50, p99), one Redis GET on
the same connection pool in the same run, and the parts of an invocation timed alone with the same
objects: JWT check (remembered token, and a full RS256 verification), rate limit, the one cache round
trip, validation of the cached document, serialization, logs and metrics.

stdout (where the function's logs and EMF metric lines go, as in Lambda) is sent to /dev/null while
measuring, so a terminal does not set the pace; the report goes to the original stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from tests.bench.lambda_env import QUOTE_RESOURCE, SYMBOL, Identity, prod_environment, quote_event
from tests.bench.lambda_env import seed_cached_quote as seed
from tests.conftest import REPO_ROOT
from tests.redis_server import own_redis

TARGET_P50_MS = 1.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(call: Callable[[], Any], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of each of ``runs`` calls."""
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(runs):
        w0, c0 = time.perf_counter_ns(), time.process_time_ns()
        call()
        c1, w1 = time.process_time_ns(), time.perf_counter_ns()
        wall.append((w1 - w0) / 1e6)
        cpu.append((c1 - c0) / 1e6)
    return wall, cpu


@contextlib.contextmanager
def stdout_to_devnull() -> Iterator[Any]:
    """fd 1 → /dev/null while measuring; yields a writer on the original stdout for the report."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    report = os.fdopen(os.dup(saved), "w", buffering=1)
    try:
        yield report
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
        report.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--invocations", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--no-breakdown", action="store_true", help="invocations and one Redis GET only")
    args = parser.parse_args()
    identity = Identity()
    try:
        with own_redis() as redis_url, stdout_to_devnull() as out:
            seed(redis_url)
            os.environ.update(prod_environment(redis_url, identity, task_root=str(REPO_ROOT), tracing=False))
            # One user sends every request: the per-user budget (600 a minute in prod) must not answer 429s.
            os.environ["USER_RATE_LIMIT_PER_MINUTE"] = "1000000"
            return run(args.invocations, args.warmup, identity, out, breakdown=not args.no_breakdown)
    finally:
        identity.close()


def run(invocations: int, warmup: int, identity: Identity, out: Any, *, breakdown: bool) -> int:
    # Imported only now: the environment above is what a Lambda container starts with.
    import app as app_module
    from chalicelib import bootstrap
    from infra.local.lambda_runtime import LambdaContext

    token = identity.token()
    event = quote_event(token)
    context = LambdaContext(function_name="market-data-prod", timeout_seconds=28)

    statuses: dict[int, int] = {}

    def invoke() -> dict[str, Any]:
        response: dict[str, Any] = app_module.app(event, context)
        statuses[response["statusCode"]] = statuses.get(response["statusCode"], 0) + 1
        return response

    first = invoke()
    if first["statusCode"] != 200 or '"cached":true' not in first["body"]:
        print(f"the quote was not served from the cache: {first['statusCode']} {first['body'][:300]}", file=out)
        return 1
    for _ in range(warmup):
        invoke()
    wall, cpu = timed(invoke, invocations)

    if set(statuses) != {200}:
        print(f"not every invocation was a 200: {statuses}", file=out)
        return 1
    container = bootstrap.container()
    client = container.redis
    key = f"{container.settings.cache_key_prefix}quote:{SYMBOL}"
    redis_wall, redis_cpu = timed(lambda: client.get(key), invocations)

    p50, p99 = percentile(wall, 50), percentile(wall, 99)
    print(
        f"Warm cached quote: {invocations} in-process invocations of app.app(event, context), after {warmup}", file=out
    )
    print(f"  invocation wall  p50 {p50:.3f} ms  p99 {p99:.3f} ms", file=out)
    print(f"  invocation CPU   p50 {percentile(cpu, 50):.3f} ms  p99 {percentile(cpu, 99):.3f} ms", file=out)
    redis_p50 = percentile(redis_wall, 50)
    print(
        f"  one Redis GET    p50 {redis_p50:.3f} ms  p99 {percentile(redis_wall, 99):.3f} ms"
        f"  (CPU p50 {percentile(redis_cpu, 50):.3f} ms)",
        file=out,
    )
    print(f"  invocation p50 / Redis GET p50: {p50 / redis_p50:.1f}x", file=out)
    if breakdown:
        print_breakdown(container, token, max(300, invocations // 3), p50, out)
    verdict = "meets" if p50 <= TARGET_P50_MS else "misses"
    mean = statistics.fmean(wall)
    print(
        f"Target p50 <= {TARGET_P50_MS:.1f} ms per invocation: {verdict} it ({p50:.3f} ms; mean {mean:.3f} ms)",
        file=out,
    )
    return 0


def print_breakdown(container: Any, token: str, runs: int, p50: float, out: Any) -> None:
    """Each part of a cached request timed alone, with the container's own objects."""
    from chalicelib import observability
    from chalicelib.http_api import json_response
    from chalicelib.market_api import to_wire
    from chalicelib.models.market import Quote, QuoteResponse
    from chalicelib.ports import LookupCount
    from chalicelib.services.market_data.cached import CacheKind, decode

    verifier = container.token_verifier
    subject = verifier.verify(token).subject
    kind = CacheKind("quote", Quote, 60, hot=True)
    keys = [f"quote:{SYMBOL}", f"unknown:quote:{SYMBOL}"]
    entry = container.cache.get_many(keys[:1])[keys[0]]
    served = decode(kind, entry)
    if served is None:
        raise SystemExit("the cached document does not decode")

    def cache_round_trip() -> None:
        pending = container.quotas.deferred_hit(subject, 1_000_000_000)
        with pending.riding():
            container.cache.get_many(keys, touch_hot=[SYMBOL], lookups=LookupCount("quote"))
        pending.decision()

    def logs_and_metrics() -> None:
        # What the middleware and the read-through emit for one cached request.
        dimensions = {"route": f"GET {QUOTE_RESOURCE}"}
        observability.logger.append_keys(request_id="bench", method="GET", resource=QUOTE_RESOURCE, user=subject)
        observability.count("CacheHit", dimensions={"kind": "quote"})
        observability.count("Requests", dimensions=dimensions)
        observability.milliseconds("Latency", 0.5, dimensions=dimensions)
        observability.logger.info("request", extra={"status": 200, "latency_ms": 0.5})
        observability.logger.remove_keys(["request_id", "method", "resource", "user"])

    in_a_request = {
        "JWT check (token remembered)": lambda: verifier.verify(token),
        "the one Redis round trip (rate limit + read + hot set + counter)": cache_round_trip,
        "validation of the cached document": lambda: decode(kind, entry),
        "serialization (model_dump_json + response)": lambda: json_response(to_wire(served, QuoteResponse)),
        "logs and metrics (1 log line, 3 EMF lines)": logs_and_metrics,
    }
    for_reference = {
        "JWT full RS256 verification (a token not seen lately)": lambda: verifier._verify(token),
        "rate limit on its own (its own round trip, as before)": lambda: container.quotas.hit(subject, 1_000_000_000),
    }
    print(f"Where the time goes: each part alone, {runs} runs, p50 wall / p50 CPU", file=out)
    accounted = 0.0
    for name, call in in_a_request.items():
        wall, cpu = timed(call, runs)
        accounted += percentile(wall, 50)
        print(f"  {name:<66} {percentile(wall, 50):.3f} / {percentile(cpu, 50):.3f} ms", file=out)
    rest = max(0.0, p50 - accounted)
    print(f"  {'the rest (Chalice dispatch, middleware, event and response)':<66} {rest:.3f} ms", file=out)
    for name, call in for_reference.items():
        wall, cpu = timed(call, runs)
        print(f"  not paid by a warm cached request: {name}: {percentile(wall, 50):.3f} ms", file=out)


if __name__ == "__main__":
    sys.exit(main())
