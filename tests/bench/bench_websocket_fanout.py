"""Benchmark: WebSocket fan-out through the local gateway, measured in one run (`make bench`).

    python -m tests.bench.bench_websocket_fanout [--connections 1000] [--topics 100]

1. Starts a local stack of its own (moto server, Redis, gateway + Lambda workers, replay data).
2. Opens N real WebSocket connections (aiohttp client, real sockets) through `$connect`, and subscribes
   connection i to topic i mod T through `$default` (waiting for each ack).
3. Publishes one round of T quote updates with `StreamingService.publish`, exactly as the refresh jobs
   do: one Query per topic on DynamoDB (moto), then `post_to_connection` to every subscriber through
   the gateway's management API on a bounded pool.
4. Prints: fan-out messages per second, publish duration (subscriber lookups, posting), and two
   latencies against the spec's 50 ms WebSocket latency target: per message, from the start of its
   `post_to_connection` to receipt at the client; and per round, from the start of `publish` to receipt
   (lookups and the queue of the bounded pool included). The clients run in a process of their own,
   timed with time.monotonic (system-wide on Linux), so the publisher's threads do not delay them.

The payloads: AAPL's recorded replay quote re-addressed to the benchmark's own topics BENCH00..BENCH99,
which are not tickers any provider knows; the prices are the recording's, nothing is invented, and
nothing here is served by the API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from chalicelib.adapters.apigw_broadcaster import ApiGatewayBroadcaster
from chalicelib.bootstrap import Container
from chalicelib.models.market import QuoteResponse
from chalicelib.models.streaming import StreamUpdate, quote_update
from chalicelib.ports import DeliveryStatus
from chalicelib.settings import load_settings
from infra.local.replay.transport import YahooReplayTransport
from infra.local.run import free_port
from infra.local.token import issue_dev_token
from tests.load.run_api_load import PREFIX, clear_prefix, start_stack, stop_stack

TARGET_LATENCY_MS = 50.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def run_clients(url: str, connections: int, topics: int, results: Any) -> None:
    """In a process of its own (so the publisher's threads do not delay receipt): open the connections,
    subscribe connection i to BENCH<i mod topics>, report readiness, then record when each connection's
    published (non-snapshot) update arrives, as time.monotonic(), which is system-wide on Linux."""
    asyncio.run(_clients(url, connections, topics, results))


async def _clients(url: str, connections: int, topics: int, results: Any) -> None:
    received: dict[int, float] = {}
    failures: list[str] = []
    done = asyncio.Event()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        gate = asyncio.Semaphore(50)  # connect 50 at a time, as a fleet of browsers would trickle in

        async def open_one(index: int) -> aiohttp.ClientWebSocketResponse | None:
            async with gate:
                try:
                    ws = await session.ws_connect(f"{url}?token={issue_dev_token(f'bench-{index}')}")
                    subscribe = {
                        "type": "subscribe",
                        "data": {"type": "stock_quotes", "symbols": [_symbol(index, topics)]},
                    }
                    await ws.send_str(json.dumps(subscribe))
                    while True:
                        message = await asyncio.wait_for(ws.receive(), 60)
                        if message.type != aiohttp.WSMsgType.TEXT:
                            raise RuntimeError(f"closed before the ack: {message.type}")
                        if json.loads(message.data).get("type") == "subscribed":
                            return ws
                except Exception as exc:
                    failures.append(f"client {index}: {type(exc).__name__}: {exc}")
                    return None

        started = time.monotonic()
        sockets = await asyncio.gather(*(open_one(i) for i in range(connections)))
        opened = [(i, ws) for i, ws in enumerate(sockets) if ws is not None]

        async def read(index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    return
                at = time.monotonic()
                payload = json.loads(message.data)
                if payload.get("type") == "quote_update" and not payload["data"]["snapshot"]:
                    received.setdefault(index, at)
                    if len(received) == len(opened):
                        done.set()

        readers = [asyncio.create_task(read(i, ws)) for i, ws in opened]
        results.put(("ready", len(opened), time.monotonic() - started, failures))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 90)
        results.put(("received", received))
        for _, ws in opened:
            await ws.close()
        for reader in readers:
            reader.cancel()


def _symbol(index: int, topics: int) -> str:
    return f"BENCH{index % topics:02d}"


class TimedBroadcaster:
    """Wraps the real broadcaster, noting when the post to each connection started (time.monotonic).
    Its own bounded pool (send_many) runs unchanged: only the per-message send is wrapped."""

    def __init__(self, inner: ApiGatewayBroadcaster) -> None:
        self._inner = inner
        self._post = inner.send
        self.post_started: dict[str, float] = {}
        inner.send = self.send  # type: ignore[method-assign]

    def send(self, connection_id: str, message: bytes) -> DeliveryStatus:
        self.post_started[connection_id] = time.monotonic()
        return self._post(connection_id, message)

    def send_many(self, deliveries: Sequence[tuple[str, bytes]]) -> list[DeliveryStatus]:
        return self._inner.send_many(deliveries)


def connection_users(publisher: Container) -> dict[str, int]:
    """connection id → client index (each client connects as its own user, bench-<index>)."""
    client = publisher.dynamodb
    found: dict[str, int] = {}
    for page in client.get_paginator("scan").paginate(TableName=publisher.settings.connections_table):
        for item in page["Items"]:
            user = item["user_id"]["S"]
            if user.startswith("bench-"):
                found[item["connection_id"]["S"]] = int(user.removeprefix("bench-"))
    return found


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
    url = f"ws://127.0.0.1:{port}/api/v1/market/ws/stock-quotes"
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    clients = context.Process(target=run_clients, args=(url, args.connections, args.topics, results), daemon=True)
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
                quote_update(quote.model_copy(update={"symbol": _symbol(i, args.topics)})) for i in range(args.topics)
            ]
            clients.start()
            _, opened, connect_seconds, failures = results.get(timeout=600)
            print(
                f"WebSocket fan-out: {opened}/{args.connections} connections open and subscribed across "
                f"{args.topics} topics in {connect_seconds:.1f} s (gateway {host})"
            )
            index_of = connection_users(publisher)
            real = publisher.broadcaster()
            assert isinstance(real, ApiGatewayBroadcaster)
            broadcaster = TimedBroadcaster(real)
            started = time.monotonic()
            report = publisher.streaming.publish(updates, broadcaster)
            published = time.monotonic()
            _, received = results.get(timeout=120)
        if not received:
            print("  no update arrived; client failures:", failures[:5])
            return 1
        round_ms = [(at - started) * 1000 for at in received.values()]
        delivery_ms = [
            (received[index] - broadcaster.post_started[cid]) * 1000
            for cid, index in index_of.items()
            if index in received and cid in broadcaster.post_started
        ]
        last = max(received.values())
        print(
            f"  publish: sent={report.sent} gone={report.gone} failed={report.failed} in {published - started:.3f} s "
            f"(subscriber lookups {report.lookup_seconds:.3f} s, posting {report.send_seconds:.3f} s)"
        )
        print(
            f"  received: {len(received)}/{opened} updates; fan-out {len(received) / (last - started):.0f} messages/s"
        )
        for label, values in (("post_to_connection → client", delivery_ms), ("publish() start → client", round_ms)):
            p50, p99 = percentile(values, 0.50), percentile(values, 0.99)
            print(
                f"  latency {label}: p50={p50:.1f} ms p99={p99:.1f} ms max={max(values):.1f} ms "
                f"(vs the spec's {TARGET_LATENCY_MS:.0f} ms: p50 x{p50 / TARGET_LATENCY_MS:.2f}, "
                f"p99 x{p99 / TARGET_LATENCY_MS:.2f})"
            )
        if failures:
            print(f"  client failures: {len(failures)}; first: {failures[0]}")
        return 0 if len(received) == opened == args.connections else 1
    finally:
        if clients.is_alive():
            clients.terminate()
        stop_stack(process, redis_url)


if __name__ == "__main__":
    raise SystemExit(main())
