"""The offline world under `make run` (`python -m infra.local.run`, embedded defaults, real sockets).

On the replay day every payload agrees with every other: 50 symbols drawn from those trading that day
(seed printed; OFFLINE_WORLD_SEED replays a draw) plus GOOGL, BRK-B and FB quote 200 labelled `replay`;
/indices has all five; every symbol /movers and /sectors name can be quoted; the spec's JavaScript
example gets snapshots for AAPL, MSFT and GOOGL.
"""

from __future__ import annotations

import json
import os
import queue
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests

from infra.local.replay.universe import load_universe
from tests.integration.conftest import local_run

pytestmark = pytest.mark.integration

JS_DIR = Path(__file__).resolve().parent / "js"
DRAWN = 50
ALWAYS = ("GOOGL", "BRK-B", "FB")


@dataclass(frozen=True)
class RunningStack:
    api: str
    ws_url: str
    headers: dict[str, str]
    token: str

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.api}{path}", headers=self.headers, timeout=30)


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # One user walks ~60 symbols, each a cache miss: the per-user budget (USER_UPSTREAM_CALL_COST per
    # provider call) is not what this test is about.
    env = {"USER_RATE_LIMIT_PER_MINUTE": "1000000"}
    with local_run(redis_url, tmp_path_factory.mktemp("offline-world"), env=env) as run:
        yield RunningStack(api=run.api, ws_url=run.ws_url, headers={"Authorization": f"Bearer {run.token}"},
                           token=run.token)  # fmt: skip


def _replay_day(stack: RunningStack) -> date:
    response = stack.get("/quote/SPY")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "replay"
    assert body["replay_day"], body
    return date.fromisoformat(body["replay_day"])


def _quotable(stack: RunningStack, symbol: str) -> dict[str, Any]:
    response = stack.get(f"/quote/{symbol}")
    assert response.status_code == 200, f"{symbol}: {response.status_code} {response.text}"
    body: dict[str, Any] = response.json()
    assert body["source"] == "replay", body
    return body


@pytest.mark.timeout(300)
def test_fifty_drawn_symbols_and_the_renamed_ones_quote_on_the_replay_day(
    stack: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    universe = load_universe()
    day = _replay_day(stack)
    seed = int(os.environ.get("OFFLINE_WORLD_SEED") or random.SystemRandom().randrange(1 << 30))
    trading = universe.trading_on(universe.days.index(day))
    drawn = random.Random(seed).sample(sorted(trading), DRAWN)
    with capsys.disabled():  # in `make test`'s output: the draw can be repeated
        print(f"\noffline world: replay day {day}, seed {seed} (OFFLINE_WORLD_SEED={seed} draws the same symbols)")
    for symbol in [*drawn, *ALWAYS]:
        body = _quotable(stack, symbol)
        assert body["symbol"] == symbol
        assert body["price"] > 0
    # One spelling per symbol: the dotted class share is answered under Yahoo's dash.
    assert _quotable(stack, "BRK.B")["symbol"] == "BRK-B"


@pytest.mark.timeout(120)
def test_indices_answer_all_five(stack: RunningStack) -> None:
    response = stack.get("/indices")
    assert response.status_code == 200, response.text
    body = response.json()
    assert [index["symbol"] for index in body["indices"]] == ["^GSPC", "^DJI", "^IXIC", "^RUT", "^VIX"]
    assert body["unavailable"] == []
    assert body["source"] == "replay"


@pytest.mark.timeout(300)
def test_every_symbol_movers_and_sectors_name_can_be_quoted(stack: RunningStack) -> None:
    named: set[str] = set()
    for mover in ("gainers", "losers", "actives"):
        response = stack.get(f"/movers?type={mover}&limit=25")
        assert response.status_code == 200, response.text
        movers = response.json()["movers"]
        assert movers, f"no {mover} on the replay day"
        named.update(item["symbol"] for item in movers)
    sectors = stack.get("/sectors")
    assert sectors.status_code == 200, sectors.text
    body = sectors.json()
    named.update(sector["etf"] for sector in body["sectors"] if sector["price"] is not None)
    # XLC began trading in June 2018, after the replayed window: the one sector the data cannot show.
    assert body["unavailable"] == ["Communication Services"]
    for symbol in sorted(named):
        _quotable(stack, symbol)


@pytest.mark.timeout(120)
def test_a_symbol_outside_the_universe_or_not_yet_listed_is_a_404_saying_so(stack: RunningStack) -> None:
    universe = load_universe()
    day_index = universe.days.index(_replay_day(stack))
    outside = stack.get("/quote/TSLA")
    assert outside.status_code == 404, outside.text
    assert outside.json()["error"]["code"] == "symbol_not_found"
    late = [s for s in ("APTV", "DWDP", "BHF", "BHGE", "DXC") if not universe.listed_on(s, day_index)]
    for symbol in late:
        response = stack.get(f"/quote/{symbol}")
        assert response.status_code == 404, response.text
        assert "not yet listed" in response.json()["error"]["message"]


@pytest.mark.timeout(120)
def test_the_specs_javascript_example_gets_snapshots_for_aapl_msft_and_googl(stack: RunningStack) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js runs the spec's JavaScript example (the machine has it; see README)"
    process = subprocess.Popen(
        [node, "--experimental-websocket", str(JS_DIR / "harness.js"), str(JS_DIR / "spec_websocket_example.js"),
         f"{stack.ws_url}?token={stack.token}", "40"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: queue.Queue[dict[str, Any]] = queue.Queue()

    def pump() -> None:
        for line in process.stdout or ():
            lines.put(json.loads(line))

    threading.Thread(target=pump, daemon=True).start()
    try:
        snapshots: set[str] = set()
        errors: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while snapshots != {"AAPL", "MSFT", "GOOGL"} and time.monotonic() < deadline:
            message = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            if message.get("type") == "quote_update" and message["data"]["snapshot"]:
                snapshots.add(message["data"]["symbol"])
            elif message.get("type") == "error":
                errors.append(message)
        assert snapshots == {"AAPL", "MSFT", "GOOGL"}
        assert errors == []
    finally:
        process.kill()
        process.wait()
