"""Locust load test of the REST API (the spec's load tool). Not a pytest module: pytest ignores
tests/load (see pyproject). Run it with `make load`, or by hand against a running `make run`:

    locust -f tests/load/test_api_load.py --host=http://127.0.0.1:8000 --headless -u 50 -r 50 -t 60s

Each simulated user has its own token (its own `sub`), as dashboard users would, so the per-user rate
limit applies per user. The mix follows a dashboard: mostly quotes, then the market panels.
"""

from __future__ import annotations

import itertools
import random
import threading

from locust import HttpUser, between, task

from infra.local.token import issue_dev_token

# Symbols of the replay universe (BABA and BTC-USD, served by the old recordings, are not in it: 404s).
SYMBOLS = ("AAPL", "MSFT", "GOOG", "NVDA", "QQQ", "SPY", "JPM", "BRK-B")
_user_numbers = itertools.count(1)
_numbers_lock = threading.Lock()


class DashboardUser(HttpUser):
    wait_time = between(0.05, 0.25)

    def on_start(self) -> None:
        with _numbers_lock:
            number = next(_user_numbers)
        self.client.headers["Authorization"] = f"Bearer {issue_dev_token(f'load-user-{number}')}"

    @task(10)
    def quote(self) -> None:
        self.client.get(f"/api/v1/market/quote/{random.choice(SYMBOLS)}", name="/quote/{symbol}")

    @task(3)
    def quotes(self) -> None:
        symbols = ",".join(random.sample(SYMBOLS, 4))
        self.client.get(f"/api/v1/market/quotes?symbols={symbols}", name="/quotes")

    @task(3)
    def overview(self) -> None:
        self.client.get("/api/v1/market/overview", name="/overview")

    @task(2)
    def indices(self) -> None:
        self.client.get("/api/v1/market/indices", name="/indices")

    @task(2)
    def sectors(self) -> None:
        self.client.get("/api/v1/market/sectors", name="/sectors")

    @task(2)
    def movers(self) -> None:
        kind = random.choice(("gainers", "losers", "actives"))
        self.client.get(f"/api/v1/market/movers?type={kind}&limit=10", name="/movers")

    @task(2)
    def sentiment(self) -> None:
        self.client.get("/api/v1/market/sentiment", name="/sentiment")

    @task(2)
    def historical(self) -> None:
        self.client.get("/api/v1/market/historical/AAPL?period=1y&interval=1d", name="/historical/{symbol}")

    @task(1)
    def profile(self) -> None:
        self.client.get("/api/v1/market/profile/AAPL", name="/profile/{symbol}")

    @task(1)
    def news(self) -> None:
        self.client.get("/api/v1/market/news/AAPL?limit=10", name="/news/{symbol}")

    @task(1)
    def search(self) -> None:
        query = random.choice(("apple", "micro", "NV", "bank", "energy"))
        self.client.post("/api/v1/market/search", json={"query": query, "limit": 10}, name="/search")
