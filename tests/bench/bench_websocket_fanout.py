"""Benchmark: WebSocket fan-out through the local gateway, measured in one run (`make bench`).

    python -m tests.bench.bench_websocket_fanout [--connections 1000] [--topics 100]

1. Starts a local stack of its own (moto server, Redis, gateway + Lambda workers, replay data).
2. Opens N real WebSocket connections (aiohttp client, real sockets) through `$connect`, and subscribes
   connection i to topic i mod T through `$default` (waiting for each ack).
3. Publishes one round of T quote updates with `StreamingService.publish`, exactly as the refresh jobs
   do: one Query per topic on DynamoDB (moto), then `post_to_connection` to every subscriber through
   the gateway's management API on a bounded pool.
4. Prints: fan-out messages per second, publish duration, and latency from the start of `publish` to
   receipt at each client (p50/p99/max), against the spec's 50 ms WebSocket latency target.

The payloads: AAPL's recorded replay quote re-addressed to the benchmark's own topics BENCH00..BENCH99,
which are not tickers any provider knows; the prices are the recording's, nothing is invented, and
nothing here is served by the API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

from chalicelib.bootstrap import Container
from chalicelib.models.market import QuoteResponse
from chalicelib.models.streaming import StreamUpdate, quote_update
from chalicelib.settings import load_settings
from infra.local.replay.transport import YahooReplayTransport
from infra.local.run import free_port
from infra.local.token import issue_dev_token
from tests.load.run_api_load import PREFIX, clear_prefix, start_stack

TARGET_LATENCY_MS = 50.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


class Clients:
    """N WebSocket clients on one event loop in a background thread, recording receipt times."""

    def __init__(self, url: str, connections: int, topics: int) -> None:
        self.url = url
        self.connections = connections
        self.topics = topics
        self.received: dict[int, float] = {}  # client index → perf_counter at receipt of the update
        self.expected = connections
        self.all_received = threading.Event()
        self.ready = threading.Event()
        self.failures: list[str] = []
        self.connect_seconds = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.ready.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.perf_counter()
            gate = asyncio.Semaphore(50)  # connect 50 at a time, as a fleet of browsers would trickle in
            sockets = await asyncio.gather(*(self._open(session, i, gate) for i in range(self.connections)))
            self.connect_seconds = time.perf_counter() - started
            readers = [asyncio.create_task(self._read(i, ws)) for i, ws in enumerate(sockets) if ws is not None]
            self.ready.set()
            await self._stop.wait()
            for ws in sockets:
                if ws is not None:
                    await ws.close()
            for reader in readers:
                reader.cancel()

    async def _open(
        self, session: aiohttp.ClientSession, index: int, gate: asyncio.Semaphore
    ) -> aiohttp.ClientWebSocketResponse | None:
        async with gate:
            token = issue_dev_token(f"bench-{index // 5}")  # 5 connections per user: the default cap
            try:
                ws = await session.ws_connect(f"{self.url}?token={token}", timeout=aiohttp.ClientWSTimeout(ws_close=30))
                symbol = f"BENCH{index % self.topics:02d}"
                await ws.send_str(
                    json.dumps({"type": "subscribe", "data": {"type": "stock_quotes", "symbols": [symbol]}})
                )
                while True:
                    message = await asyncio.wait_for(ws.receive(), 30)
                    if message.type != aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"closed before the ack: {message.type}")
                    if json.loads(message.data).get("type") == "subscribed":
                        return ws
            except Exception as exc:
                self.failures.append(f"client {index}: {type(exc).__name__}: {exc}")
                self.expected -= 1
                return None

    async def _read(self, index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            payload = json.loads(message.data)
            if payload.get("type") == "quote_update" and not payload["data"]["snapshot"]:
                self.received.setdefault(index, now)
                if len(self.received) >= self.expected:
                    self.all_received.set()


def recorded_quote(redis_url: str, tmp: Path) -> QuoteResponse:
    settings = load_settings(
        {
            "STAGE": "local",
            "MARKET_DATA_SOURCE": "replay",
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": PREFIX,
            "YFINANCE_CACHE_DIR": str(tmp / "yfinance"),
        }
    )
    return Container(settings, replay_transport=YahooReplayTransport()).market_data.get_quote("AAPL")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--topics", type=int, default=100)
    args = parser.parse_args()

    port, moto_port = free_port(), free_port()
    process, redis_url = start_stack(port, {"MOTO_PORT": str(moto_port)})
    host = f"http://127.0.0.1:{port}"
    clients = Clients(f"ws://127.0.0.1:{port}/api/v1/market/ws/stock-quotes", args.connections, args.topics)
    try:
        clear_prefix(redis_url)
        with tempfile.TemporaryDirectory() as tmp:
            quote = recorded_quote(redis_url, Path(tmp))
            publisher_env: dict[str, Any] = {
                "STAGE": "local",
                "REDIS_URL": redis_url,
                "CACHE_KEY_PREFIX": PREFIX,
                "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
                "WEBSOCKET_MANAGEMENT_ENDPOINT": host,
                "YFINANCE_CACHE_DIR": str(Path(tmp) / "yfinance"),
            }
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                os.environ.setdefault(name, "testing")
            publisher = Container(load_settings(publisher_env))
            updates: list[StreamUpdate] = [
                quote_update(quote.model_copy(update={"symbol": f"BENCH{i:02d}"})) for i in range(args.topics)
            ]
            clients.start()
            opened = clients.expected
            print(
                f"WebSocket fan-out: {opened}/{args.connections} connections open and subscribed across "
                f"{args.topics} topics in {clients.connect_seconds:.1f} s (gateway {host})"
            )
            started = time.perf_counter()
            report = publisher.streaming.publish(updates, publisher.broadcaster())
            published = time.perf_counter()
            clients.all_received.wait(30)
            latencies = [(at - started) * 1000 for at in clients.received.values()]
        if not latencies:
            print("  no update arrived; failures:", clients.failures[:5])
            return 1
        last = max(clients.received.values())
        p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        print(f"  publish: sent={report.sent} gone={report.gone} failed={report.failed} in {published - started:.3f} s")
        print(
            f"  received: {len(latencies)}/{opened} updates; fan-out {len(latencies) / (last - started):.0f} messages/s"
        )
        print(
            f"  latency publish → client: p50={p50:.1f} ms p99={p99:.1f} ms max={max(latencies):.1f} ms "
            f"mean={statistics.fmean(latencies):.1f} ms"
        )
        print(
            f"  vs the spec's {TARGET_LATENCY_MS:.0f} ms target: p50 x{p50 / TARGET_LATENCY_MS:.2f}, "
            f"p99 x{p99 / TARGET_LATENCY_MS:.2f} (whole round of {opened} messages, queueing included)"
        )
        if clients.failures:
            print(f"  client failures: {len(clients.failures)}; first: {clients.failures[0]}")
        return 0 if len(latencies) == opened and not clients.failures else 1
    finally:
        clients.stop()
        removed = clear_prefix(redis_url)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        print(f"  stack stopped; removed {removed} keys under {PREFIX!r}")


if __name__ == "__main__":
    raise SystemExit(main())
