"""Locust file: quote readers drawing symbols from a Zipf law (s = 1.1) over the replay universe.
Not a pytest module (pytest ignores tests/load). `make load-quotes` runs it through
tests/load/run_quote_load.py, which starts the stack with its scheduler and prints the numbers.

Every symbol read is classified when its request is sent: *cold* if no earlier read of that symbol has
completed successfully in this run (nothing could have cached it for this reader yet), *warm* otherwise. A read is a
hit when its quote says ``cached: true`` and ``stale: false``. At the end the per-read records are
summarized into the JSON file named by QUOTE_LOAD_REPORT.

Environment (set by the runner): QUOTE_LOAD_SYMBOLS (comma-separated universe), QUOTE_LOAD_SEED,
QUOTE_LOAD_REPORT (where the summary goes).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

from infra.local.token import issue_dev_token
from tests.load.quote_reads import Read, Zipf, outcomes, summarize

ZIPF_EXPONENT = 1.1
BATCH_SIZE = 5  # a watchlist read through GET /quotes


@dataclass
class Tally:
    """What every simulated user reports (one locust process: gevent greenlets share it)."""

    completed: set[str] = field(default_factory=set)  # symbols with at least one successful read
    reads: list[Read] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)  # one per HTTP request
    requests: int = 0
    failed_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


SYMBOLS = tuple(s for s in os.environ.get("QUOTE_LOAD_SYMBOLS", "AAPL").split(",") if s)
SEED = int(os.environ.get("QUOTE_LOAD_SEED", "1"))
ZIPF = Zipf(SYMBOLS, ZIPF_EXPONENT, SEED)
TALLY = Tally()
_user_numbers = itertools.count(1)


class QuoteReader(HttpUser):
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        number = next(_user_numbers)
        self.rng = random.Random(SEED * 100_003 + number)  # per user, reproducible from the printed seed
        self.client.headers["Authorization"] = f"Bearer {issue_dev_token(f'quote-reader-{number}')}"

    @task(4)
    def quote(self) -> None:
        symbol = ZIPF.draw(self.rng)
        self._read([symbol], f"/api/v1/market/quote/{symbol}", "/quote/{symbol}")

    @task(1)
    def watchlist(self) -> None:
        symbols = list(dict.fromkeys(ZIPF.draw(self.rng) for _ in range(BATCH_SIZE)))
        self._read(symbols, "/api/v1/market/quotes?symbols=" + ",".join(symbols), "/quotes")

    def _read(self, symbols: list[str], path: str, name: str) -> None:
        with TALLY.lock:
            warm = {s: s in TALLY.completed for s in symbols}
        started = time.perf_counter()
        with self.client.get(path, name=name, catch_response=True) as response:
            elapsed_ms = (time.perf_counter() - started) * 1000
            answer = outcomes(symbols, response.status_code, response.text)
            errors = [f"{s}: {e}" for s, (_, _, e) in answer.items() if e]
            if errors:
                response.failure("; ".join(errors)[:300])
            else:
                response.success()
        with TALLY.lock:
            TALLY.requests += 1
            TALLY.failed_requests += bool(errors)
            TALLY.latencies_ms.append(elapsed_ms)
            for symbol, (hit, stale, error) in answer.items():
                TALLY.reads.append(Read(symbol, warm[symbol], hit, stale, error))
                if not error:  # a failed read cached nothing: the next one is still a first read
                    TALLY.completed.add(symbol)


def summary() -> dict[str, Any]:
    with TALLY.lock:
        result = summarize(list(TALLY.reads), list(TALLY.latencies_ms), TALLY.requests, TALLY.failed_requests)
    return {**result, "symbols_in_universe": len(SYMBOLS), "top_ranked": ZIPF.ranked[:5]}


def _write_summary(**_: Any) -> None:
    target = os.environ.get("QUOTE_LOAD_REPORT")
    if target:
        Path(target).write_text(json.dumps(summary(), indent=2))


events.test_stop.add_listener(_write_summary)  # type: ignore[no-untyped-call]
