"""The bookkeeping of the quote hit-rate load, kept apart from locust (which monkey-patches the
standard library on import) so the unit tests can check it: the Zipf draw, what one answer says about
each symbol read, and the summary the runner prints."""

from __future__ import annotations

import itertools
import json
import random
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class Zipf:
    """Rank k (1-based) drawn with probability proportional to k^-s; ranks map to a seeded shuffle of the
    universe, so popularity does not follow the alphabet."""

    def __init__(self, symbols: Sequence[str], exponent: float, seed: int) -> None:
        if not symbols:
            raise ValueError("the universe is empty")
        self.ranked = list(symbols)
        random.Random(seed).shuffle(self.ranked)
        cumulative = list(itertools.accumulate(k**-exponent for k in range(1, len(self.ranked) + 1)))
        self._cumulative = [c / cumulative[-1] for c in cumulative]

    def draw(self, rng: random.Random) -> str:
        return self.ranked[min(bisect_left(self._cumulative, rng.random()), len(self.ranked) - 1)]


@dataclass(frozen=True)
class Read:
    """One symbol read: warm when an earlier read of the symbol had succeeded before this one was sent."""

    symbol: str
    warm: bool
    hit: bool  # cached and not stale
    stale: bool
    error: str  # "" when a quote came back


def outcomes(symbols: Sequence[str], status: int, text: str) -> dict[str, tuple[bool, bool, str]]:
    """symbol → (hit, stale, error) from one answer of GET /quote/{symbol} or GET /quotes."""
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = None
    if status != 200 or not isinstance(body, dict):
        message = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
        return dict.fromkeys(symbols, (False, False, f"HTTP {status} {message}".strip()[:160]))
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


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summarize(reads: Sequence[Read], latencies_ms: Sequence[float], requests: int, failed: int) -> dict[str, Any]:
    ok = [r for r in reads if not r.error]
    warm = [r for r in ok if r.warm]
    cold = [r for r in ok if not r.warm]
    errors: dict[str, int] = {}
    for read in reads:
        if read.error:
            errors[read.error] = errors.get(read.error, 0) + 1
    return {
        "requests": requests,
        "failed_requests": failed,
        "reads": len(reads),
        "failed_reads": len(reads) - len(ok),
        "distinct_symbols_read": len({r.symbol for r in reads}),
        "cold_reads": len(cold),
        "cold_hits": sum(1 for r in cold if r.hit),
        "warm_reads": len(warm),
        "warm_hits": sum(1 for r in warm if r.hit),
        "stale_reads": sum(1 for r in ok if r.stale),
        "warm_missed_symbols": sorted({r.symbol for r in warm if not r.hit})[:20],
        "p50_ms": round(percentile(latencies_ms, 0.50), 1),
        "p99_ms": round(percentile(latencies_ms, 0.99), 1),
        "top_errors": sorted(errors.items(), key=lambda e: -e[1])[:5],
    }


def target_met(summary: dict[str, Any], *, hit_rate: float = 0.99) -> bool:
    """The acceptance: no failed read, and at least ``hit_rate`` of the warm reads were hits."""
    return bool(
        summary["failed_reads"] == 0
        and summary["warm_reads"] > 0
        and summary["warm_hits"] >= hit_rate * summary["warm_reads"]
    )
