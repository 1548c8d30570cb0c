"""Locust load test of the WebSocket API (the spec's load tool, with a WebSocket user). Not a pytest
module (pytest ignores tests/load). `make load` runs it headless against a local stack of its own; by
hand, against a running `make run`:

    locust -f tests/load/test_websocket_load.py --host=http://127.0.0.1:8000 --headless -u 500 -r 50 -t 60s

Each simulated user holds one connection under its own token: it connects, subscribes as the spec's
JavaScript example does (market channels, then stock quotes), and then pings. Every step is reported to
locust as a request (connect, subscribe:market_data, subscribe:stock_quotes, ping), timed to the answer
it waits for (the handshake, the ack, the pong), so failures and latencies show in locust's table; a
connection closed by the server is a failure too.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from typing import Any

import websocket
from locust import User, between, events, task

from infra.local.token import issue_dev_token

SYMBOLS = ("AAPL", "MSFT", "GOOG", "NVDA", "QQQ", "SPY", "JPM", "BRK-B")
ANSWER_TIMEOUT_SECONDS = 10.0
_numbers = itertools.count(1)
_numbers_lock = threading.Lock()


class WebSocketUser(User):
    wait_time = between(5, 10)

    def on_start(self) -> None:
        with _numbers_lock:
            number = next(_numbers)
        base = (self.host or "http://127.0.0.1:8000").replace("http://", "ws://", 1).rstrip("/")
        url = base + "/api/v1/market/ws/market-data"
        self._ws: websocket.WebSocket | None = None
        token = issue_dev_token(f"ws-load-{number}")
        started = time.perf_counter()
        try:
            self._ws = websocket.create_connection(f"{url}?token={token}", timeout=ANSWER_TIMEOUT_SECONDS)
        except Exception as exc:  # any refusal or network error is a failed connect
            self._report("connect", started, exc)
            return
        self._report("connect", started, None)
        self._request(
            "subscribe:market_data",
            {"type": "subscribe", "data": {"type": "market_data", "channels": ["indices", "sentiment"]}},
            "subscribed",
        )
        self._request(
            "subscribe:stock_quotes",
            {"type": "subscribe", "data": {"type": "stock_quotes", "symbols": random.sample(SYMBOLS, 3)}},
            "subscribed",
        )

    def on_stop(self) -> None:
        if self._ws is not None:
            self._ws.close()

    @task
    def ping(self) -> None:
        if self._ws is not None:
            self._request("ping", {"type": "ping"}, "pong")

    def _request(self, name: str, message: dict[str, Any], answer_type: str) -> None:
        """Send and wait for the answer of ``answer_type``; snapshots and updates in between are skipped."""
        assert self._ws is not None
        started = time.perf_counter()
        try:
            self._ws.send(json.dumps(message))
            deadline = started + ANSWER_TIMEOUT_SECONDS
            while True:
                self._ws.settimeout(max(0.1, deadline - time.perf_counter()))
                reply = json.loads(self._ws.recv())
                if reply.get("type") == "error":
                    raise RuntimeError(f"error message: {reply['data']}")
                if reply.get("type") == answer_type:
                    break
                if time.perf_counter() > deadline:
                    raise TimeoutError(f"no {answer_type} within {ANSWER_TIMEOUT_SECONDS} s")
        except Exception as exc:
            self._report(name, started, exc)
            if isinstance(exc, websocket.WebSocketConnectionClosedException):
                self._ws = None
            return
        self._report(name, started, None)

    def _report(self, name: str, started: float, exception: BaseException | None) -> None:
        events.request.fire(  # type: ignore[no-untyped-call]
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=exception,
            context={},
        )
