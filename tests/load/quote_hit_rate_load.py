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
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

from infra.local.token import issue_dev_token

ZIPF_EXPONENT = 1.1
BATCH_SIZE = 5  # a watchlist read through GET /quotes


class Zipf:
    """Rank k (1-based) drawn with probability proportional to k^-s; ranks map to a seeded shuffle of the
    universe, so popularity does not follow the alphabet."""

    def __init__(self, symbols: Sequence[str], exponent: float, seed: int) -> None:
        self.ranked = list(symbols)
        random.Random(seed).shuffle(self.ranked)
        cumulative = list(itertools.accumulate(k**-exponent for k in range(1, len(self.ranked) + 1)))
        self._cumulative = [c / cumulative[-1] for c in cumulative]

    def draw(self, rng: random.Random) -> str:
        return self.ranked[min(bisect_left(self._cumulative, rng.random()), len(self.ranked) - 1)]


@dataclass
class Tally:
    """What every simulated user reports (one locust process: gevent greenlets share it)."""

    completed: set[str] = field(default_factory=set)  # symbols with at least one finished read
    reads: list[tuple[str, bool, bool, bool, str]] = field(default_factory=list)  # symbol, warm, hit, stale, error
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
            outcomes = _outcomes(symbols, response.status_code, response.text)
            errors = [f"{s}: {e}" for s, (_, _, e) in outcomes.items() if e]
            if errors:
                response.failure("; ".join(errors)[:300])
            else:
                response.success()
        with TALLY.lock:
            TALLY.requests += 1
            TALLY.failed_requests += bool(errors)
            TALLY.latencies_ms.append(elapsed_ms)
            for symbol, (hit, stale, error) in outcomes.items():
                TALLY.reads.append((symbol, warm[symbol], hit, stale, error))
                if not error:  # a failed read cached nothing: the next one is still a first read
                    TALLY.completed.add(symbol)


def _outcomes(symbols: list[str], status: int, text: str) -> dict[str, tuple[bool, bool, str]]:
    """symbol → (hit, stale, error message or "")."""
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if status != 200 or not isinstance(body, dict):
        message = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
        return dict.fromkeys(symbols, (False, False, f"HTTP {status} {message}"[:160]))
    items: list[dict[str, Any]] = body["quotes"] if "quotes" in body else [{"symbol": symbols[0], "quote": body}]
    found: dict[str, tuple[bool, bool, str]] = {}
    for item in items:
        quote = item.get("quote")
        if quote is None:
            found[item["symbol"]] = (False, False, str(item.get("error", {}).get("message", "no quote"))[:160])
        else:
            stale = bool(quote.get("stale"))
            found[item["symbol"]] = (bool(quote.get("cached")) and not stale, stale, "")
    return {s: found.get(s, (False, False, "missing from the answer")) for s in symbols}


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary() -> dict[str, Any]:
    with TALLY.lock:
        reads = list(TALLY.reads)
        latencies = list(TALLY.latencies_ms)
        requests, failed = TALLY.requests, TALLY.failed_requests
    ok = [r for r in reads if not r[4]]
    warm = [r for r in ok if r[1]]
    cold = [r for r in ok if not r[1]]
    errors: dict[str, int] = {}
    for read in reads:
        if read[4]:
            errors[read[4]] = errors.get(read[4], 0) + 1
    return {
        "symbols_in_universe": len(SYMBOLS),
        "top_ranked": ZIPF.ranked[:5],
        "requests": requests,
        "failed_requests": failed,
        "reads": len(reads),
        "failed_reads": len(reads) - len(ok),
        "distinct_symbols_read": len({r[0] for r in reads}),
        "cold_reads": len(cold),
        "cold_hits": sum(1 for r in cold if r[2]),
        "warm_reads": len(warm),
        "warm_hits": sum(1 for r in warm if r[2]),
        "stale_reads": sum(1 for r in ok if r[3]),
        "warm_missed_symbols": sorted({r[0] for r in warm if not r[2]})[:20],
        "p50_ms": round(_percentile(latencies, 0.50), 1),
        "p99_ms": round(_percentile(latencies, 0.99), 1),
        "top_errors": sorted(errors.items(), key=lambda e: -e[1])[:5],
    }


def _write_summary(**_: Any) -> None:
    target = os.environ.get("QUOTE_LOAD_REPORT")
    if target:
        Path(target).write_text(json.dumps(summary(), indent=2))


events.test_stop.add_listener(_write_summary)  # type: ignore[no-untyped-call]
