"""Per-symbol misses are not vendor failures: a flood of unknown tickers leaves every breaker closed.

Only vendor-wide failures (timeouts, 5xx, 429, auth, an unparseable whole reply) may open a vendor's
breaker; "no such symbol" and "no data for this symbol" never do, live or replay. Live-shaped: each real
adapter gets its vendor's unknown-symbol answer at the HTTP layer. Replay: the local stack's replay
source, through the Chalice app.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
import requests
from chalice.test import Client

from chalicelib import bootstrap
from chalicelib.errors import ProviderError
from chalicelib.models.market import DataKind, Interval, Period
from chalicelib.ports import BreakerState
from chalicelib.services.provider_chain import AllProvidersFailed, ProviderChain, RetryPolicy, UnknownSymbol
from chalicelib.settings import load_settings
from infra.local.replay.transport import CannedResponse, json_body
from infra.local.token import issue_dev_token
from tests.fakes.vendors_http import VendorTransport, vendor_recording, yahoo_recording

REQUESTS = 1000
KEYS = {
    "FINANCIAL_MODELING_PREP_API_KEY": "fmp-key",
    "ALPHA_VANTAGE_API_KEY": "av-key",
    "TIINGO_API_KEY": "tiingo-key",
}
# A low threshold: two counted failures would open a breaker, so a single miscounted miss shows.
BREAKER = {"BREAKER_FAILURE_THRESHOLD": "2", "BREAKER_COOLDOWN_SECONDS": "600", "PROVIDER_MAX_ATTEMPTS": "1"}

# Each vendor's genuine (or documented) answer for a ticker it does not know, per request kind.
YAHOO_UNKNOWN = {
    "/v7/finance/quote": yahoo_recording("quote_SIX_unknown_symbol_empty"),
    "/v8/finance/chart/": yahoo_recording("chart_SI_404_delisted"),
    "/v10/finance/quoteSummary/": yahoo_recording("quoteSummary_assetProfile_GC_F_404"),
}
FMP_EMPTY = CannedResponse(200, b"[]")  # FMP's answer for an unknown symbol (see tests/contract/test_fmp_provider.py)
AV_EMPTY_QUOTE = vendor_recording("alpha_vantage", "GLOBAL_QUOTE_invalid_symbol_empty")
# NOT A RECORDING: Alpha Vantage's documented "Invalid API call" body for an unknown ticker's series.
AV_INVALID_CALL = CannedResponse(
    200, json_body({"Error Message": "Invalid API call. Please retry or visit the documentation for TIME_SERIES_DAILY"})
)
# NOT A RECORDING: Tiingo's unknown-ticker answer as the shared fixtures README describes it.
TIINGO_UNKNOWN = CannedResponse(404, json_body({"detail": "Error: Ticker 'NOPE' not found"}))


def _unknown_answer(request: requests.PreparedRequest) -> CannedResponse:
    url = request.url or ""
    for path, answer in YAHOO_UNKNOWN.items():
        if path in url:
            return answer
    if "financialmodelingprep.com" in url:
        return FMP_EMPTY
    if "alphavantage.co" in url:
        return AV_EMPTY_QUOTE if "GLOBAL_QUOTE" in url else AV_INVALID_CALL
    if "tiingo.com" in url:
        return TIINGO_UNKNOWN
    return CannedResponse(500, b"unexpected request in this test", "text/plain")


def _ticker(index: int) -> str:
    """Distinct well-formed tickers nobody lists (so no cache can absorb a repeat)."""
    return f"QZX{index:04d}"


def _ask(chain: ProviderChain, kind: DataKind, symbol: str) -> str:
    """One request of ``kind`` for ``symbol`` through the chain: what the chain concluded."""
    if kind is DataKind.QUOTE:
        batch = chain.fetch_quotes(kind, [symbol], deadline=None)
        return "unknown" if symbol in batch.unknown else "other"
    calls: dict[DataKind, Callable[..., object]] = {
        DataKind.HISTORICAL: lambda p, t: p.get_historical(symbol, Period.MO1, Interval.D1, timeout_seconds=t),
        DataKind.PROFILE: lambda p, t: p.get_profile(symbol, timeout_seconds=t),
    }
    try:
        chain.fetch(kind, f"{kind.value} for {symbol}", calls[kind], deadline=None)
    except UnknownSymbol:
        return "unknown"
    except AllProvidersFailed:
        return "failed"
    return "other"


@pytest.mark.parametrize("vendor", ["yahoo", "fmp", "alpha_vantage", "tiingo"])
def test_a_thousand_unknown_symbols_leave_the_live_vendors_breaker_closed(
    vendor: str, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # GIVEN the vendor's real adapter answering its own unknown-symbol shapes, with a hair-trigger breaker
    transport = VendorTransport().respond("yahoo", _unknown_answer)
    for other in ("fmp", "alpha_vantage", "tiingo"):
        transport.respond(other, _unknown_answer)
    settings = load_settings(
        {"STAGE": "local", "REDIS_URL": redis_url, "CACHE_KEY_PREFIX": f"unknown-{vendor}:",
         "YFINANCE_CACHE_DIR": str(tmp_path / "yfinance"), **KEYS, **BREAKER}
    )  # fmt: skip
    container = bootstrap.Container(settings, http_transport=transport)
    provider = next(p for p in container.providers if p.vendor == vendor)
    # Quotas off (0): Alpha Vantage's 500 a day would otherwise end the run early, hiding what we test.
    chain = ProviderChain(
        [provider], quotas=container.quotas, breaker=container.breaker, limits={},
        retry=RetryPolicy(max_attempts=1), provider_timeout_seconds=2,
    )  # fmt: skip
    kinds = [k for k in (DataKind.QUOTE, DataKind.HISTORICAL, DataKind.PROFILE) if k in provider.capabilities]

    # WHEN 1,000 requests ask for tickers the vendor does not know
    verdicts = [_ask(chain, kinds[i % len(kinds)], _ticker(i)) for i in range(REQUESTS)]

    # THEN every one is "unknown" (a 404 for the client), each cost an upstream call, and the breaker
    # never counted a failure
    assert verdicts.count("unknown") == REQUESTS, {v: verdicts.count(v) for v in set(verdicts)}
    assert transport.calls.get(vendor, 0) >= REQUESTS
    status = container.breaker.status(vendor)
    assert status is None or (status.state is BreakerState.CLOSED and status.consecutive_failures == 0)


def test_vendor_wide_failures_still_open_the_breaker(redis_url: str, redis_client: redis.Redis, tmp_path: Path) -> None:
    """The counter-check: the same setup with Yahoo answering 503 opens its breaker after two requests."""
    transport = VendorTransport().answer("yahoo", CannedResponse(503, b"down", "text/plain"))
    settings = load_settings(
        {"STAGE": "local", "REDIS_URL": redis_url, "CACHE_KEY_PREFIX": "unknown-503:",
         "YFINANCE_CACHE_DIR": str(tmp_path / "yfinance"), **BREAKER}
    )  # fmt: skip
    container = bootstrap.Container(settings, http_transport=transport)
    chain = ProviderChain(
        container.providers, quotas=container.quotas, breaker=container.breaker, limits={},
        retry=RetryPolicy(max_attempts=1), provider_timeout_seconds=2,
    )  # fmt: skip
    for index in range(2):
        assert _ask(chain, DataKind.PROFILE, _ticker(index)) == "failed"
    status = container.breaker.status("yahoo")
    assert status is not None
    assert status.state is BreakerState.OPEN


def test_a_thousand_unknown_symbols_through_the_replay_app_answer_404_and_leave_the_breaker_closed(
    client: Client, auth_headers: dict[str, str]
) -> None:
    # GIVEN the app on the replay source; WHEN 1,000 requests ask for symbols outside its universe
    paths = ("/api/v1/market/quote/{}", "/api/v1/market/historical/{}?period=1mo&interval=1d",
             "/api/v1/market/profile/{}")  # fmt: skip
    statuses: dict[int, int] = {}
    # Fifty users, so the per-user budget (600 units a minute; a miss costs 1 + 20 per provider call)
    # is not what answers.
    users = [{"Authorization": f"Bearer {issue_dev_token(f'flood-{n}')}"} for n in range(50)]
    for index in range(REQUESTS):
        user = users[index % len(users)]
        response = client.http.get(paths[index % len(paths)].format(_ticker(index)), headers=user)
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        if response.status_code != 404:
            pytest.fail(f"{paths[index % len(paths)]} for {_ticker(index)}: {response.status_code} {response.body!r}")
    # THEN each is a 404 and the replay vendor's breaker is closed with no failure counted
    assert statuses == {404: REQUESTS}
    providers = json.loads(client.http.get("/api/v1/market/providers", headers=auth_headers).body)["providers"]
    yahoo = next(p for p in providers if p["name"] == "yahoo")
    assert yahoo["breaker_state"] == "closed", yahoo


def test_provider_errors_for_a_symbol_are_not_counted_as_failures() -> None:
    """The classification the chain relies on: per-symbol errors never count toward a breaker."""
    from chalicelib.errors import ProviderNoData, ProviderSymbolNotFound, ProviderTimeout, ProviderUnavailable

    per_symbol: list[ProviderError] = [ProviderSymbolNotFound("x", "no such symbol"), ProviderNoData("x", "no bars")]
    vendor_wide: list[ProviderError] = [ProviderUnavailable("x", "HTTP 503"), ProviderTimeout("x", "slow")]
    assert [e.counts_as_failure for e in per_symbol] == [False, False]
    assert [e.counts_as_failure for e in vendor_wide] == [True, True]
