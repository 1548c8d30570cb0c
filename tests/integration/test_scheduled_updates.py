"""End to end, as a user of the local stack sees it: `python -m infra.local.run` (moto server, Redis,
gateway, Lambda workers, local scheduler, replay clock), a WebSocket client subscribed to AAPL, and the
scheduler's quote refresh pushing `quote_update`s that carry genuinely changing (replayed) prices."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import websocket

from infra.local.token import issue_dev_token
from tests.integration.conftest import local_run

pytestmark = pytest.mark.integration

REFRESH_SECONDS = 2.0
OFF = "refresh_indices=off,refresh_market=off,refresh_sentiment=off,warm_cache=off,cleanup=off"


@pytest.mark.timeout(120)
def test_a_subscriber_gets_scheduler_made_quote_updates_within_one_interval(redis_url: str, tmp_path: Path) -> None:
    schedule = {"LOCAL_SCHEDULE": f"refresh_quotes={REFRESH_SECONDS:g}s,{OFF}",
                "REPLAY_STEP_SECONDS": str(REFRESH_SECONDS),  # a new real daily bar every refresh
                "CACHE_KEY_PREFIX": "e2e:"}  # fmt: skip
    with local_run(redis_url, tmp_path, env=schedule) as run:
        gateway_port = run.gateway_port
        url = f"ws://127.0.0.1:{gateway_port}/api/v1/market/ws/stock-quotes?token={issue_dev_token('e2e')}"
        ws = websocket.create_connection(url, timeout=30)
        try:
            ws.send(json.dumps({"type": "subscribe", "data": {"type": "stock_quotes", "symbols": ["AAPL"]}}))
            subscribed_at = time.monotonic()
            updates: list[tuple[float, datetime, dict[str, object]]] = []
            while len(updates) < 3:
                ws.settimeout(30)
                message = json.loads(ws.recv())
                if message["type"] == "quote_update" and not message["data"]["snapshot"]:
                    received = datetime.now(UTC)
                    updates.append((time.monotonic(), received, message["data"]))
        finally:
            ws.close()

        first_at = updates[0][0]
        # The first scheduler-made update arrives within one refresh interval (plus the run itself).
        assert first_at - subscribed_at < REFRESH_SECONDS + 3.0, first_at - subscribed_at
        prices = [data["quote"]["price"] for _, _, data in updates]  # type: ignore[index]
        assert len(set(prices)) > 1, f"replayed prices should change between refreshes: {prices}"
        for _, received, data in updates:
            assert data["symbol"] == "AAPL"
            assert data["source"] == "replay"
            as_of = datetime.fromisoformat(str(data["timestamp"]).replace("Z", "+00:00"))
            # Freshness: from the value's own timestamp to receipt, under the spec's one minute.
            assert (received - as_of).total_seconds() < 60

        # The runs are recorded and queryable.
        status = requests.get(
            f"http://127.0.0.1:{gateway_port}/api/v1/market/jobs/status",
            headers={"Authorization": f"Bearer {issue_dev_token(operator=True)}"},
            timeout=30,
        ).json()
        quotes = next(job for job in status["jobs"] if job["name"] == "refresh_quotes")
        assert quotes["last_run"]["status"] == "succeeded"
        assert quotes["last_run"]["trigger"] == "schedule"
        # The run started the shard workers; they posted (counted by them, shown by /ws/stats).
        assert quotes["last_run"]["counts"]["fanout_shards"] >= 1
        stats = requests.get(
            f"http://127.0.0.1:{gateway_port}/api/v1/market/ws/stats",
            headers={"Authorization": f"Bearer {issue_dev_token(operator=True)}"},
            timeout=30,
        ).json()
        assert stats["messages_last_hour"]["sent"] >= len(updates)

        run.process.send_signal(signal.SIGINT)
        assert run.process.wait(timeout=20) == 0
        assert "Traceback" not in run.stderr_path.read_text()
