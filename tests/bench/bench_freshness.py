"""Benchmark: data freshness end to end under the local stack, measured in one run.

    python -m tests.bench.bench_freshness [--refresh 60] [--step 60] [--updates 4]

Starts `python -m infra.local.run` (its scheduler refreshing quotes every --refresh seconds, the replay
clock stepping to the next real daily bar every --step seconds), subscribes a WebSocket client to AAPL,
and for each scheduler-made quote_update prints the freshness: receipt time minus the value's own
timestamp (for replay, when its bar became current on the replay clock). Prints p50/max against the
spec's "< 1 minute for quotes". The defaults are the deployed cadence (1-minute refresh).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from datetime import UTC, datetime

import websocket

from infra.local.run import free_port
from infra.local.token import issue_dev_token
from tests.bench.bench_fanout import percentile
from tests.load.run_api_load import clear_prefix, start_stack, stop_stack

TARGET_SECONDS = 60.0
OTHER_JOBS_OFF = "refresh_indices=off,refresh_market=off,refresh_sentiment=off,warm_cache=off,cleanup=off"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refresh", type=float, default=60.0)
    parser.add_argument("--step", type=float, default=60.0)
    parser.add_argument("--updates", type=int, default=4)
    args = parser.parse_args()
    port = free_port()
    process, redis_url = start_stack(
        port,
        {
            "LOCAL_SCHEDULE": f"refresh_quotes={args.refresh:g}s,{OTHER_JOBS_OFF}",
            "REPLAY_STEP_SECONDS": f"{args.step:g}",
        },
    )
    try:
        clear_prefix(redis_url)
        url = f"ws://127.0.0.1:{port}/api/v1/market/ws/stock-quotes?token={issue_dev_token('freshness')}"
        ws = websocket.create_connection(url, timeout=30)
        ws.send(json.dumps({"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}}))
        ages: list[float] = []
        started = time.monotonic()
        while len(ages) < args.updates:
            ws.settimeout(args.refresh * 3 + 30)
            message = json.loads(ws.recv())
            if message["type"] != "quote_update" or message["data"]["snapshot"]:
                continue
            received = datetime.now(UTC)
            as_of = datetime.fromisoformat(message["data"]["timestamp"].replace("Z", "+00:00"))
            ages.append((received - as_of).total_seconds())
            price = message["data"]["quote"]["price"]
            elapsed = time.monotonic() - started
            print(f"  update {len(ages)} at +{elapsed:.1f}s: price {price}, freshness {ages[-1]:.2f} s", flush=True)
        ws.close()
        p50, worst = statistics.median(ages), max(ages)
        print(
            f"Quote freshness (refresh every {args.refresh:g}s, replay step {args.step:g}s): "
            f"p50 {p50:.2f} s, p90 {percentile(ages, 0.9):.2f} s, max {worst:.2f} s over {len(ages)} updates; "
            f"vs the spec's {TARGET_SECONDS:.0f} s: max x{worst / TARGET_SECONDS:.2f}"
        )
        return 0 if worst < TARGET_SECONDS else 1
    finally:
        stop_stack(process, redis_url)


if __name__ == "__main__":
    raise SystemExit(main())
