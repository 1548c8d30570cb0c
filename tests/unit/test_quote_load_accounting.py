"""The quote hit-rate load's bookkeeping (tests/load/quote_reads.py): what `make load-quotes` counts as
a hit, a cold read and a failure, and the Zipf draw it reads with."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from tests.load.quote_reads import Read, Zipf, outcomes, summarize, target_met


def test_zipf_rank_frequencies_follow_the_power_law() -> None:
    zipf = Zipf([f"S{i}" for i in range(100)], 1.1, seed=3)
    rng = random.Random(9)
    counts = Counter(zipf.draw(rng) for _ in range(200_000))
    first, second, tenth = (counts[zipf.ranked[k - 1]] for k in (1, 2, 10))
    assert first / second == pytest.approx(2**1.1, rel=0.05)
    assert first / tenth == pytest.approx(10**1.1, rel=0.1)
    assert set(counts) <= set(zipf.ranked)


def test_the_seed_fixes_the_ranking_and_another_seed_changes_it() -> None:
    symbols = [f"S{i}" for i in range(50)]
    assert Zipf(symbols, 1.1, seed=1).ranked == Zipf(symbols, 1.1, seed=1).ranked
    assert Zipf(symbols, 1.1, seed=1).ranked != Zipf(symbols, 1.1, seed=2).ranked


def test_a_quote_is_a_hit_only_when_cached_and_not_stale() -> None:
    def one(cached: bool, stale: bool) -> tuple[bool, bool, str]:
        body = {"symbol": "AAPL", "price": 1.0, "cached": cached, "stale": stale}
        return outcomes(["AAPL"], 200, json.dumps(body))["AAPL"]

    assert one(True, False) == (True, False, "")
    assert one(False, False) == (False, False, "")
    assert one(True, True) == (False, True, "")


def test_batch_items_are_judged_one_by_one_and_errors_named() -> None:
    body = {
        "quotes": [
            {"symbol": "AAPL", "quote": {"cached": True, "stale": False}},
            {"symbol": "ZZZZ", "error": {"code": "symbol_not_found", "message": "no instrument ZZZZ"}},
        ]
    }
    found = outcomes(["AAPL", "ZZZZ", "MSFT"], 200, json.dumps(body))
    assert found["AAPL"] == (True, False, "")
    assert found["ZZZZ"] == (False, False, "no instrument ZZZZ")
    assert found["MSFT"] == (False, False, "missing from the answer")


def test_a_non_200_answer_fails_every_symbol_it_carried() -> None:
    body = {"error": {"code": "service_unavailable", "message": "breaker open"}}
    assert outcomes(["A", "B"], 503, json.dumps(body)) == {
        "A": (False, False, "HTTP 503 breaker open"),
        "B": (False, False, "HTTP 503 breaker open"),
    }
    assert outcomes(["A"], 504, "<html>gateway timeout</html>")["A"] == (False, False, "HTTP 504")


def test_the_summary_separates_cold_reads_and_excludes_failures_from_the_hit_rate() -> None:
    reads = [
        Read("AAPL", warm=False, hit=False, stale=False, error=""),
        Read("AAPL", warm=True, hit=True, stale=False, error=""),
        Read("AAPL", warm=True, hit=False, stale=False, error=""),
        Read("MSFT", warm=False, hit=True, stale=False, error=""),
        Read("NOPE", warm=False, hit=False, stale=False, error="HTTP 404"),
    ]
    summary = summarize(reads, [10.0, 20.0, 30.0, 40.0], requests=4, failed=1)
    assert (summary["cold_reads"], summary["cold_hits"]) == (2, 1)
    assert (summary["warm_reads"], summary["warm_hits"]) == (2, 1)
    assert summary["failed_reads"] == 1
    assert summary["warm_missed_symbols"] == ["AAPL"]
    assert (summary["p50_ms"], summary["p99_ms"]) == (30.0, 40.0)
    assert not target_met(summary)


def test_the_target_needs_99_percent_warm_hits_and_no_failure() -> None:
    warm_hits = [Read("A", True, True, False, "")] * 99
    assert target_met(summarize([*warm_hits, Read("A", True, False, False, "")], [], 100, 0))
    assert not target_met(summarize([*warm_hits[:98], *[Read("A", True, False, False, "")] * 2], [], 100, 0))
    assert not target_met(summarize([*warm_hits, Read("A", True, True, False, "HTTP 503")], [], 100, 1))
