"""Benchmark: the sharded fan-out end to end, spec format vs batch format, in one run (`make bench-fanout`).

    python -m tests.bench.bench_fanout [--connections 1000] [--rounds 5] [--period 15] [--seed 1]

1. Starts, for each format in turn, a fresh local stack of its own (`python -m infra.local.run`: moto, a
   Redis of its own, the gateway with its Lambda worker pool and Invoke API, the scheduler; so one
   format's teardown cannot load the other's measurement) with only `refresh_quotes` scheduled, every
   --period seconds, and the replay clock stepping to the next real trading day every --period seconds,
   half a period out of phase with the refresh, so every subscribed price changes once per round.
2. For each format (spec, then batch), in its stack: a client process of its own opens N WebSocket connections
   (aiohttp, real sockets, at most --connect-rate new connections per second, one user per connection),
   subscribes each to its 20 symbols (Zipf, s = --zipf, seeded, drawn from the stocks listed on the
   replay start day), waits for every ack and snapshot, then listens.
3. Rounds are started by the scheduler's refresh_quotes only (refresh → publish → one fanout_worker
   Lambda invocation per shard through the gateway's Invoke API → posts to the management API). The
   measured window is exactly --rounds refresh periods, centred between fires. A round's start is its
   scheduled fire time (the EventBridge rule firing; the scheduler's start, from its log line, plus k
   periods), so queueing for a Lambda worker and the refresh itself count in the latency; the job
   run's own recorded start is printed beside it.
4. Prints per format: management-API posts and billed messages per round (the emulator's counter),
   frames per connection per round, receipt latency per connection per round (its LAST message of that
   round minus the round's start; p50/p99/max over all rounds x connections), rounds seen by every
   connection, seq gaps, DynamoDB requests (moto's request recorder) and Redis commands (INFO
   commandstats, this stack's own Redis) per round — both include the refresh's own cache and job-run
   work — and the monthly API Gateway messages and cost for 10,000 users x 20 symbols x 390 ticks x 21
   days from the measured billed messages per connection per round. Then the acceptance (issue 12):
   batch p99 ≤ 2 s, batch p99 ≤ 1/10 of spec p99, no round lost in either format; exit 1 on failure.

Only 127.0.0.1; each stack is stopped after its format and only its keys are removed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis

from chalicelib.bootstrap import Container
from chalicelib.ports import JobRun
from chalicelib.settings import load_settings
from infra.local.replay.transport import replay_calendar_from_env
from infra.local.replay.universe import load_universe
from infra.local.run import free_port
from infra.local.token import issue_dev_token

REPO_ROOT = Path(__file__).resolve().parents[2]
PREFIX = "benchfanout:"
OTHER_JOBS_OFF = "refresh_indices=off,refresh_market=off,refresh_sentiment=off,warm_cache=off,cleanup=off"
# Issue 12's acceptance.
MAX_BATCH_P99_SECONDS = 2.0
MAX_BATCH_TO_SPEC_P99 = 0.1
# The cost model: API Gateway WebSocket messages, $1.00 per million (billed per started 32 KB).
MODEL_USERS, MODEL_TICKS_PER_DAY, MODEL_DAYS, PRICE_PER_MILLION = 10_000, 390, 21, 1.00
# The stack's startup (moto, Redis, tables, workers) before its scheduler starts, measured here (2 cores):
# used only to put the replay step boundaries half a period away from the refresh fires.
STARTUP_GUESS_SECONDS = 10.0
WINDOW_LEAD_SECONDS = 0.5
SETUP_TIMEOUT_SECONDS = 60.0
HEARTBEAT_SECONDS = 60.0


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


# --- The symbols. ---


def zipf_plans(connections: int, per_connection: int, s: float, seed: int, env: dict[str, str]) -> tuple[
    list[list[str]], list[str]
]:  # fmt: skip
    """Each connection's symbols: distinct, drawn Zipf(s) over the stocks listed on the replay start day
    (ranked by a seeded shuffle: the data has no popularity order of its own). Returns (plans, ranking)."""
    universe = load_universe()
    start = replay_calendar_from_env(env).start
    ranking = sorted(universe.stocks_trading_on(start))
    rng = random.Random(seed)
    rng.shuffle(ranking)
    weights = [1.0 / (rank**s) for rank in range(1, len(ranking) + 1)]
    plans = []
    for _ in range(connections):
        chosen: dict[str, None] = {}
        while len(chosen) < per_connection:
            chosen.update(dict.fromkeys(rng.choices(ranking, weights, k=per_connection - len(chosen))))
        plans.append(list(chosen))
    return plans, ranking


# --- The clients (a process of their own). ---


@dataclass
class ClientConnection:
    index: int
    symbols: list[str]
    acked: bool = False
    snapshot_items: int = 0
    last_seq: int = 0
    seqs: int = 0
    anomalies: list[tuple[float, int, int]] = field(default_factory=list)  # (at, expected, got)
    # as_of (the replay step's timestamp) → [last receipt (epoch s), frames, items]
    rounds: dict[str, list[float]] = field(default_factory=dict)
    closed: str | None = None

    @property
    def ready(self) -> bool:
        return self.acked and self.snapshot_items >= len(self.symbols)

    def receive(self, raw: str, at: float) -> None:
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "subscribed":
            self.acked = True
            return
        seq = message.get("seq")
        if seq is None:
            return  # pong, error: not data
        self.seqs += 1
        if seq != self.last_seq + 1:
            self.anomalies.append((at, self.last_seq + 1, seq))
        self.last_seq = max(self.last_seq, seq)
        items = message["data"]["updates"] if kind == "batch" else [message]
        in_frame: set[str] = set()
        for item in items:
            data = item["data"]
            if item["type"] != "quote_update":
                continue
            if data["snapshot"]:
                self.snapshot_items += 1
                continue
            key = data["timestamp"]
            entry = self.rounds.setdefault(key, [0.0, 0, 0])
            entry[0] = at
            entry[2] += 1
            if key not in in_frame:
                in_frame.add(key)
                entry[1] += 1

    def report(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "seqs": self.seqs,
            "last_seq": self.last_seq,
            "anomalies": self.anomalies,
            "rounds": self.rounds,
            "closed": self.closed,
            "ready": self.ready,
        }


def run_clients(
    url: str, fmt: str, plans: list[list[str]], rate: float, setup_concurrency: int, control: Any, results: Any
) -> None:
    asyncio.run(_clients(url, fmt, plans, rate, setup_concurrency, control, results))


async def _clients(
    url: str, fmt: str, plans: list[list[str]], rate: float, setup_concurrency: int, control: Any, results: Any
) -> None:
    loop = asyncio.get_running_loop()
    connections = [ClientConnection(i, symbols) for i, symbols in enumerate(plans)]
    sockets: list[aiohttp.ClientWebSocketResponse] = []
    failures: list[str] = []
    readers: list[asyncio.Task[None]] = []
    timeout = aiohttp.ClientTimeout(total=None, connect=60, sock_connect=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

        async def read(connection: ClientConnection, ws: aiohttp.ClientWebSocketResponse) -> None:
            async for message in ws:
                if message.type == aiohttp.WSMsgType.TEXT:
                    connection.receive(message.data, time.time())
                else:
                    break
            connection.closed = f"{ws.close_code}"

        # Setups in flight (connect, subscribe, ack and snapshots) are bounded as well as the connect
        # rate: the local stack's few Lambda workers and moto answer a few setups a second, and
        # requests queued past API Gateway's 29 s integration timeout would fail.
        in_flight = asyncio.Semaphore(setup_concurrency)

        async def open_one(connection: ClientConnection) -> None:
            token = issue_dev_token(f"bench-{fmt}-{connection.index}")
            async with in_flight:
                try:
                    # WebSocket pings every 60 s: API Gateway (and the emulator) close a connection after 10 min
                    # without a frame from the client, and a long setup plus the rounds can exceed that.
                    ws = await session.ws_connect(
                        f"{url}?token={token}&format={fmt}", autoping=True, heartbeat=HEARTBEAT_SECONDS
                    )
                except Exception as exc:
                    failures.append(f"connect {connection.index}: {type(exc).__name__}: {exc}")
                    return
                sockets.append(ws)
                readers.append(asyncio.create_task(read(connection, ws)))
                subscribe = {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": connection.symbols}}
                await ws.send_str(json.dumps(subscribe))
                deadline = time.monotonic() + SETUP_TIMEOUT_SECONDS
                while not connection.ready and time.monotonic() < deadline and connection.closed is None:
                    await asyncio.sleep(0.05)

        started = time.monotonic()
        opening = []
        for i, connection in enumerate(connections):
            # At most `rate` new connections per second, as a fleet of browsers would arrive.
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            opening.append(asyncio.create_task(open_one(connection)))
        await asyncio.gather(*opening)
        connected = ready = time.monotonic() - started
        results.put(
            {
                "opened": len(sockets),
                "acked": sum(c.acked for c in connections),
                "snapshots_complete": sum(c.ready for c in connections),
                "connect_seconds": connected,
                "ready_seconds": ready,
                "failures": failures[:5],
                "failure_count": len(failures),
            }
        )
        await loop.run_in_executor(None, control.wait)  # the bench says when the measurement is over
        results.put([c.report() for c in connections])
        closing = asyncio.Semaphore(200)

        async def close(ws: aiohttp.ClientWebSocketResponse) -> None:
            async with closing:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 10)

        await asyncio.gather(*(close(ws) for ws in sockets))
        for reader in readers:
            reader.cancel()


# --- The stack. ---


@dataclass
class Stack:
    process: subprocess.Popen[str]
    port: int
    moto_port: int
    redis_url: str
    scheduler_started: float
    recording: Path
    # The fanout_worker's "shard delivered" log lines: (time, connections, sent, send seconds).
    deliveries: list[tuple[float, int, int, float]] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _log_time(line: str) -> float:
    # logging's default asctime, local time: "2026-12-01 23:26:01,123 INFO ..."
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _drain(
    process: subprocess.Popen[str], log_path: Path | None, deliveries: list[tuple[float, int, int, float]]
) -> None:
    with Path(log_path or os.devnull).open("w") as log:
        for line in process.stdout or ():
            log.write(line)
            if '"message":"shard delivered"' in line:
                with contextlib.suppress(ValueError, KeyError):
                    entry = json.loads(line)
                    at = datetime.strptime(entry["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z").timestamp()
                    deliveries.append((at, int(entry["connections"]), int(entry["sent"]), float(entry["send_seconds"])))


def start_stack(env_extra: dict[str, str], recording: Path, log_path: Path | None = None) -> Stack:
    port, moto_port, redis_port = free_port(), free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = {
        **os.environ,
        "GATEWAY_PORT": str(port),
        "MOTO_PORT": str(moto_port),
        # A Redis of the stack's own (nothing answers at this URL, so make run starts one there): its
        # INFO commandstats count only this benchmark's stack.
        "REDIS_URL": redis_url,
        "LOCAL_REDIS_PORT": str(redis_port),
        "CACHE_KEY_PREFIX": PREFIX,
        "USER_RATE_LIMIT_PER_MINUTE": "1000000",
        # moto's request recorder writes here once started (POST /moto-api/recorder/start-recording).
        "MOTO_RECORDER_FILEPATH": str(recording),
        **env_extra,
    }
    env.pop("MOTO_ENABLE_RECORDING", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "infra.local.run"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    scheduler_started = 0.0
    for line in process.stdout:
        if "infra.local.scheduler: scheduler started" in line:
            scheduler_started = _log_time(line)
        if line.startswith("Local stack ready"):
            # Keep draining the stack's output, or its log writes would block once the pipe fills.
            if not scheduler_started:
                raise SystemExit("the stack's scheduler did not log its start")
            stack = Stack(process, port, moto_port, redis_url, scheduler_started, recording)
            threading.Thread(target=_drain, args=(process, log_path, stack.deliveries), daemon=True).start()
            return stack
    raise SystemExit("the local stack exited before it was ready")


def stop_stack(stack: Stack) -> None:
    removed = 0
    with contextlib.suppress(redis.exceptions.RedisError):
        client = redis.Redis.from_url(stack.redis_url)
        for key in client.scan_iter(match=PREFIX + "*", count=1000):
            removed += int(client.delete(key))
        client.close()
    stack.process.send_signal(signal.SIGINT)
    try:
        stack.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        stack.process.kill()
    print(f"stack stopped; removed {removed} keys under {PREFIX!r}")


def _post(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="POST", data=b""), timeout=10).read()  # noqa: S310


def _get_json(url: str, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:  # noqa: S310
        return json.loads(response.read())


def redis_commands(url: str) -> dict[str, int]:
    client = redis.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def dynamodb_requests(recording: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    if not recording.exists():
        return counts
    with recording.open() as handle:
        for line in handle:
            headers = {k.lower(): v for k, v in json.loads(line)["headers"].items()}
            target = headers.get("x-amz-target", "")
            if target.startswith("DynamoDB_"):
                operation = target.split(".", 1)[1]
                counts[operation] = counts.get(operation, 0) + 1
    return counts


# --- One format. ---


@dataclass
class FormatResult:
    fmt: str
    p50: float
    p99: float
    maximum: float
    lost: int
    not_set_up: int
    lines: list[str]


def measure_format(stack: Stack, fmt: str, plans: list[list[str]], args: argparse.Namespace) -> FormatResult:
    period = args.period
    url = f"ws://127.0.0.1:{stack.port}/api/v1/market/ws/market-data"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    control = context.Event()
    clients = context.Process(
        target=run_clients,
        args=(url, fmt, plans, args.connect_rate, args.setup_concurrency, control, results),
        daemon=True,
    )
    lines: list[str] = []
    began = time.monotonic()
    clients.start()
    try:
        ready = results.get(timeout=len(plans) * 2 + 300)
        lines.append(
            f"  setup: {ready['opened']}/{len(plans)} connected in {ready['connect_seconds']:.1f} s "
            f"(≤ {args.connect_rate:g}/s), {ready['acked']} acked, {ready['snapshots_complete']} with all "
            f"{args.symbols} snapshots after {ready['ready_seconds']:.1f} s"
            + (f"; {ready['failure_count']} failures, first: {ready['failures'][:1]}" if ready["failure_count"] else "")
        )
        # The window: --rounds periods, from half a period before a fire to half a period before the
        # fire after the last measured one, so each measured round's posts fall inside it.
        now = time.time()
        k = int((now + 1.0 - stack.scheduler_started) // period) + 1
        fires = [stack.scheduler_started + (k + j) * period for j in range(args.rounds)]
        # Just before the first measured fire to just before the fire after the last one: the window holds
        # exactly the measured rounds' work when a round completes within its period.
        window_start, window_end = fires[0] - WINDOW_LEAD_SECONDS, fires[-1] + period - WINDOW_LEAD_SECONDS
        time.sleep(max(0.0, window_start - time.time()))
        moto = f"http://127.0.0.1:{stack.moto_port}/moto-api/recorder"
        _post(f"{moto}/reset-recording")
        _post(f"{moto}/start-recording")
        usage_before = _get_json(f"{stack.host}/_local/management-usage")
        redis_before = redis_commands(stack.redis_url)
        time.sleep(max(0.0, window_end - time.time()))
        _post(f"{moto}/stop-recording")
        usage_after = _get_json(f"{stack.host}/_local/management-usage")
        redis_after = redis_commands(stack.redis_url)
        dynamo = dynamodb_requests(stack.recording)
        published = stored_rounds(stack.redis_url)
        # Late messages of the last measured round still count (and are timed) until --drain past its end.
        time.sleep(args.drain)
        control.set()
        reports: list[dict[str, Any]] = results.get(timeout=120)
        clients.join(timeout=120)
        runs = job_runs(stack, window_start, window_end)
    finally:
        control.set()
        if clients.is_alive():
            clients.terminate()
    leftover = wait_for_disconnects(stack)

    rounds = args.rounds
    n = len(plans)
    posts = (usage_after["posts"] - usage_before["posts"]) / rounds
    billed = (usage_after["billed_messages"] - usage_before["billed_messages"]) / rounds
    bytes_posted = (usage_after["bytes_posted"] - usage_before["bytes_posted"]) / rounds
    redis_calls = sum(redis_after.get(c, 0) - redis_before.get(c, 0) for c in redis_after if c != "info")
    top_redis = sorted(
        ((c, redis_after[c] - redis_before.get(c, 0)) for c in redis_after if c != "info"), key=lambda x: -x[1]
    )[:5]

    # Each round ↔ the replay step current when it fired: as_of in (fire - period, fire].
    # The fan-out's own start per round: its publish() (the stored round's id, epoch ms), the issue's
    # original measure ("publish() start → client receipt"); the earliest stored round of that step.
    # A stored round belongs to the last fire at or before its publish; its items' as_of names it in what
    # the clients received. (Without a stored round, the replay step current at the fire.)
    publish_start: dict[float, float] = {}
    fire_of: dict[float, float] = {}
    for publish_at, as_of in sorted(published):
        owners = [f for f in fires if f <= publish_at]
        if owners and publish_at < owners[-1] + period:
            fire_of.setdefault(as_of, owners[-1])
            publish_start.setdefault(owners[-1], publish_at)

    def round_of(as_of: float) -> float | None:
        if as_of in fire_of:
            return fire_of[as_of]
        return next((f for f in fires if f - period < as_of <= f and f not in publish_start), None)

    latencies: list[float] = []
    from_publish: list[float] = []
    frames: list[int] = []
    missing = 0
    for report in reports:
        stamps = {_epoch(k): v for k, v in report["rounds"].items()}
        for fire in fires:
            got = [v for t, v in stamps.items() if round_of(t) == fire]
            if not got:
                missing += 1
                continue
            last = max(v[0] for v in got)
            latencies.append(last - fire)
            if fire in publish_start:
                from_publish.append(last - publish_start[fire])
            frames.append(sum(int(v[1]) for v in got))
    gaps_in_window = sum(1 for r in reports for at, _, _ in r["anomalies"] if window_start <= at)
    holes = sum(r["last_seq"] - r["seqs"] for r in reports)
    lost = missing + gaps_in_window + holes
    with_all = sum(1 for r in reports if all(any(round_of(_epoch(k)) == fire for k in r["rounds"]) for fire in fires))
    starts = [r.started_at.timestamp() for r in runs]
    durations = [(r.duration_ms or 0) / 1000 for r in runs]
    refresh = [publish_start[f] - f for f in fires if f in publish_start]
    lines.append(
        f"  rounds: {rounds} scheduled refresh_quotes fires every {period:g} s; job runs in the window {len(runs)}: "
        f"fire → job start p50 {percentile([r - f for r, f in zip(starts, fires, strict=False)] or [0], 0.5):.2f} s, "
        f"fire → publish() start (the refresh) p50 {percentile(refresh or [0], 0.5):.2f} s, "
        f"job duration (refresh + dispatch) p50 {percentile(durations or [0], 0.5):.2f} s; "
        f"{runs[0].counts.get('symbols', 0) if runs else 0} symbols refreshed per run"
    )
    lines.append(
        f"  posts per round (management API): {posts:,.0f}; billed 32 KB messages per round {billed:,.0f}; "
        f"{bytes_posted / max(posts, 1):,.0f} bytes per post"
    )
    lines.append(
        f"  frames per connection per round: mean {sum(frames) / max(len(frames), 1):.2f}, "
        f"max {max(frames, default=0)} (posts per connection per round {posts / n:.2f})"
    )
    if latencies:
        p50, p99, maximum = percentile(latencies, 0.5), percentile(latencies, 0.99), max(latencies)
    else:
        p50 = p99 = maximum = float("inf")
    lines.append(
        f"  receipt latency per connection x round (its LAST message of the round; {len(latencies)} samples):\n"
        f"    from the round's scheduled fire (refresh included): p50 {p50:.3f} s, p99 {p99:.3f} s, "
        f"max {maximum:.3f} s"
    )
    if from_publish:
        lines.append(
            f"    from the round's publish() start (fan-out only):   p50 {percentile(from_publish, 0.5):.3f} s, "
            f"p99 {percentile(from_publish, 0.99):.3f} s, max {max(from_publish):.3f} s"
        )
    lines.append(
        f"  rounds seen by every connection: {with_all}/{n} connections saw all {rounds}; "
        f"missing (connection, round): {missing}; seq gaps in window: {gaps_in_window}; seq holes: {holes}"
    )
    shard_runs = [d for d in stack.deliveries if window_start <= d[0] < window_end + period]
    if shard_runs:
        busy = sum(d[3] for d in shard_runs)
        lines.append(
            f"  shard workers: {len(shard_runs) / rounds:.1f} invocations per round, "
            f"{sum(d[1] for d in shard_runs) / len(shard_runs):.1f} connections per shard invocation, "
            f"posting p50 {percentile([d[3] for d in shard_runs], 0.5):.3f} s; "
            f"{sum(d[2] for d in shard_runs) / busy if busy else 0:,.0f} posts/s per worker while posting"
        )
    dynamo_total = sum(dynamo.values())
    dynamo_top = ", ".join(f"{op} {count / rounds:,.1f}" for op, count in sorted(dynamo.items(), key=lambda x: -x[1]))
    lines.append(f"  DynamoDB requests per round: {dynamo_total / rounds:,.1f} ({dynamo_top})")
    lines.append(
        f"  Redis commands per round: {redis_calls / rounds:,.1f} "
        f"({', '.join(f'{c} {v / rounds:,.1f}' for c, v in top_redis)}); both include the refresh's own "
        "cache/job-run work"
    )
    per_connection_tick = billed / n
    monthly = MODEL_USERS * per_connection_tick * MODEL_TICKS_PER_DAY * MODEL_DAYS
    lines.append(
        f"  monthly model (10,000 users x 20 symbols x 390 ticks x 21 days, {per_connection_tick:.2f} billed "
        f"messages per connection per tick): {monthly:,.0f} messages ≈ ${monthly / 1e6 * PRICE_PER_MILLION:,.2f}"
    )
    lines.append(
        f"  format duration: {time.monotonic() - began:.0f} s (teardown included; registry still counting "
        f"{leftover} connections after it)"
    )
    return FormatResult(fmt, p50, p99, maximum, lost, n - ready["snapshots_complete"], lines)


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def stored_rounds(redis_url: str) -> list[tuple[float, float]]:
    """(publish start, as_of) of each quote round still stored (ROUND_TTL_SECONDS): the round id is the
    publish's epoch ms; as_of is the replay step its items come from."""
    client = redis.Redis.from_url(redis_url)
    found = []
    try:
        for key in client.scan_iter(match=PREFIX + "ws:round:quote@*", count=1000):
            raw = client.get(key)
            if raw is None:
                continue
            document = json.loads(raw)
            as_of = json.loads(document["items"][0][1])["data"]["timestamp"]
            found.append((document["round_id"] / 1000, _epoch(as_of)))
    finally:
        client.close()
    return found


def job_runs(stack: Stack, start: float, end: float) -> list[JobRun]:
    """The refresh_quotes runs that began in [start, end)."""
    env = {
        "STAGE": "local",
        "REDIS_URL": stack.redis_url,
        "CACHE_KEY_PREFIX": PREFIX,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{stack.moto_port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        os.environ.setdefault(name, env[name])
    container = Container(load_settings(env))
    runs = container.job_runs.recent("refresh_quotes", limit=200, now=time.time())
    return sorted((r for r in runs if start <= r.started_at.timestamp() < end), key=lambda r: r.started_at)


def wait_for_disconnects(stack: Stack, timeout: float = 300) -> int:
    """Until the registry counts no open connection (every $disconnect handled), so one format's
    teardown does not load the next one's measurement."""
    token = issue_dev_token("bench-stats", operator=True)
    deadline = time.monotonic() + timeout
    last, unchanged_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            count = int(_get_json(f"{stack.host}/api/v1/market/ws/stats", token)["open_connections"])
            if count == 0:
                return 0
            if count != last:
                last, unchanged_since = count, time.monotonic()
            elif time.monotonic() - unchanged_since > 15:
                return count  # a $disconnect that timed out leaves its count until the daily cleanup
        time.sleep(1)
    return last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--period", type=float, default=60.0, help="refresh period and replay step, seconds")
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--connect-rate", type=float, default=50.0, help="new connections per second, at most")
    parser.add_argument("--setup-concurrency", type=int, default=8, help="connections being set up at once")
    parser.add_argument("--drain", type=float, default=20.0, help="seconds to wait for late messages")
    parser.add_argument("--formats", default="spec,batch")
    parser.add_argument(
        "--stack-log",
        type=Path,
        default=None,
        help="write each stack's output here (one file per format: <stem>.<format><suffix>)",
    )
    args = parser.parse_args()
    if not (1 <= args.connections <= 20_000 and 1 <= args.rounds <= 50 and 5 <= args.period <= 300):
        parser.error("--connections 1..20000, --rounds 1..50, --period 5..300")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats or any(f not in ("spec", "batch") for f in formats):
        parser.error("--formats: spec and/or batch")
    started = time.monotonic()
    plans, ranking = zipf_plans(args.connections, args.symbols, args.zipf, args.seed, dict(os.environ))
    distinct = len({s for plan in plans for s in plan})
    results: list[FormatResult] = []
    # Each format in a fresh stack of its own (moto, Redis, gateway, workers, scheduler): one format's
    # teardown (its disconnects, the registry's copy renewed after them) cannot fall in the other's window.
    for index, fmt in enumerate(formats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.time()
            env_extra = {
                "LOCAL_SCHEDULE": f"refresh_quotes={args.period:g}s,{OTHER_JOBS_OFF}",
                "REPLAY_STEP_SECONDS": f"{args.period:g}",
                # Step boundaries half a period after each expected fire: a refresh and its price read fall
                # well inside one replay day.
                "REPLAY_EPOCH": f"{t0 + STARTUP_GUESS_SECONDS + args.period / 2:.3f}",
                "WS_MAX_SUBSCRIPTIONS_PER_CONNECTION": str(max(50, args.symbols)),
            }
            log_path = args.stack_log.with_suffix(f".{fmt}{args.stack_log.suffix}") if args.stack_log else None
            stack = start_stack(env_extra, Path(tmp) / "moto-recording.jsonl", log_path)
            phase = (stack.scheduler_started - float(env_extra["REPLAY_EPOCH"])) % args.period
            if index == 0:
                print(
                    f"Fan-out benchmark: {args.connections} connections x {args.symbols} symbols (Zipf "
                    f"s={args.zipf:g}, seed {args.seed}, {len(ranking)} stocks listed on the replay start day, "
                    f"{distinct} distinct subscribed; top ranks {', '.join(ranking[:5])}), {args.rounds} rounds "
                    f"per format, refresh and replay step every {args.period:g} s, each format in a fresh "
                    "local stack of its own"
                )
            try:
                result = measure_format(stack, fmt, plans, args)
                print(f"[{fmt}]")
                print(f"  stack: gateway {stack.host}, refresh fires {phase:.1f} s into a replay step")
                print("\n".join(result.lines), flush=True)
                results.append(result)
            finally:
                stop_stack(stack)
    print(f"total duration: {time.monotonic() - started:.0f} s")
    by_format = {r.fmt: r for r in results}
    if "spec" not in by_format or "batch" not in by_format:
        return 0 if all(r.lost == 0 and r.not_set_up == 0 for r in results) else 1
    spec, batch = by_format["spec"], by_format["batch"]
    ratio = batch.p99 / spec.p99 if spec.p99 > 0 else float("inf")
    checks = [
        (f"batch p99 {batch.p99:.3f} s ≤ {MAX_BATCH_P99_SECONDS:g} s", batch.p99 <= MAX_BATCH_P99_SECONDS),
        (f"batch p99 / spec p99 = {ratio:.3f} ≤ {MAX_BATCH_TO_SPEC_P99:g}", ratio <= MAX_BATCH_TO_SPEC_P99),
        (f"no round lost (spec {spec.lost}, batch {batch.lost})", spec.lost == 0 and batch.lost == 0),
        (
            f"every connection set up (not set up: spec {spec.not_set_up}, batch {batch.not_set_up})",
            spec.not_set_up == 0 and batch.not_set_up == 0,
        ),
    ]
    for label, ok in checks:
        print(f"  {'PASS' if ok else 'FAIL'}: {label}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
