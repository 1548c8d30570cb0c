"""MarketDataService.get_quote: read-through cache policy, against real Redis and the real Yahoo adapter
(answered at the HTTP layer). Time is a controllable clock so expiry needs no sleeping."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from pydantic import BaseModel
from requests.adapters import BaseAdapter

from chalicelib.adapters.providers.yahoo import YahooProvider
from chalicelib.adapters.redis_breaker import RedisCircuitBreaker
from chalicelib.adapters.redis_cache import RedisCache
from chalicelib.adapters.redis_quotas import RedisQuotas
from chalicelib.errors import ServiceUnavailable, SymbolNotFound
from chalicelib.models.market import Quote
from chalicelib.models.served import Served
from chalicelib.ports import QuotaLimits
from chalicelib.services.market_data import CacheTimings, MarketDataService, stored_document
from chalicelib.services.provider_chain import ProviderChain, RetryPolicy
from infra.local.replay.transport import CannedResponse, CannedTransport
from tests.fakes.yahoo_http import QUOTE_PREFIX, recorded, yahoo_provider, yahoo_transport

SERVER_ERROR = CannedResponse(503, b"<html>Service Unavailable</html>", "text/html")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class SlowTransport(BaseAdapter):
    """Delays every answer, so concurrent callers overlap as they would across Lambdas."""

    def __init__(self, inner: CannedTransport, delay_seconds: float) -> None:
        super().__init__()
        self._inner, self._delay = inner, delay_seconds

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        time.sleep(self._delay)
        return self._inner.send(request, **kwargs)

    def close(self) -> None:
        return None


def quote_calls(transport: CannedTransport) -> int:
    return sum(1 for url in transport.requests_seen if url.startswith(QUOTE_PREFIX))


MakeService = Callable[..., MarketDataService]


def make_chain(client: redis.Redis, provider: YahooProvider, clock: FakeClock) -> ProviderChain:
    """The real chain over real Redis quotas and breakers (one attempt: these tests are about caching)."""
    return ProviderChain(
        [provider],
        quotas=RedisQuotas(client, key_prefix="svc:", clock=clock),
        breaker=RedisCircuitBreaker(client, key_prefix="svc:", failure_threshold=100, cooldown_seconds=1, clock=clock),
        limits={"yahoo": QuotaLimits(0, 0)},
        retry=RetryPolicy(max_attempts=1),
        provider_timeout_seconds=2,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_service(redis_client: redis.Redis, clock: FakeClock, tmp_path: Path) -> MakeService:
    def make(
        transport: BaseAdapter,
        *,
        cache: RedisCache | None = None,
        lock_wait_seconds: float = 2.0,
    ) -> MarketDataService:
        return MarketDataService(
            cache=cache or RedisCache(redis_client, key_prefix="svc:", clock=clock),
            chain=make_chain(redis_client, yahoo_provider(transport, tmp_path), clock),
            timings=CacheTimings(stale_ttl_seconds=3600, lock_ttl_seconds=5, lock_wait_seconds=lock_wait_seconds),
            clock=clock,
        )

    return make


def test_miss_fetches_then_hit_serves_from_cache(make_service: MakeService, redis_client: redis.Redis) -> None:
    transport = yahoo_transport([recorded("quote_AAPL")])
    service = make_service(transport)

    first = service.get_quote("AAPL")
    second = service.get_quote("AAPL")

    assert (first.provenance.cached, first.provenance.stale, first.provenance.source) == (False, False, "yahoo")
    assert (second.provenance.cached, second.provenance.stale) == (True, False)
    assert second.payload.price == first.payload.price == 244.6
    assert quote_calls(transport) == 1
    assert redis_client.exists("svc:quote:AAPL") == 1
    stats = service.cache_stats().kinds["quote"]
    assert (stats.hits, stats.misses, stats.hit_rate) == (1, 1, 0.5)


def test_expired_quote_is_fetched_again(make_service: MakeService, clock: FakeClock) -> None:
    transport = yahoo_transport([recorded("quote_AAPL")])
    service = make_service(transport)
    service.get_quote("AAPL")

    clock.now += 59
    assert service.get_quote("AAPL").provenance.cached is True
    clock.now += 2  # 61 s after the fetch: past the spec's 60 s quote TTL
    refreshed = service.get_quote("AAPL")

    assert refreshed.provenance.cached is False
    assert quote_calls(transport) == 2


def test_stale_copy_is_served_when_every_provider_fails(make_service: MakeService, clock: FakeClock) -> None:
    transport = yahoo_transport([recorded("quote_AAPL"), SERVER_ERROR])
    service = make_service(transport)
    service.get_quote("AAPL")
    clock.now += 120

    answer = service.get_quote("AAPL")

    assert (answer.provenance.cached, answer.provenance.stale) == (True, True)
    assert answer.payload.price == 244.6
    assert answer.provenance.source == "yahoo"  # who served it originally, not a made-up label


def test_no_copy_and_failing_providers_is_a_clear_503(make_service: MakeService) -> None:
    service = make_service(yahoo_transport([SERVER_ERROR]))
    with pytest.raises(ServiceUnavailable) as caught:
        service.get_quote("AAPL")
    assert caught.value.retry_after_seconds == 30
    assert "AAPL" in caught.value.message
    # Which vendor failed and how (its error code), never the vendor's own text (that goes to the logs).
    assert "yahoo: provider_unavailable" in caught.value.message
    assert "HTTP 503" not in caught.value.message


def test_unknown_symbol_is_symbol_not_found(make_service: MakeService) -> None:
    service = make_service(yahoo_transport([recorded("quote_SIX_unknown_symbol_empty")]))
    with pytest.raises(SymbolNotFound) as caught:
        service.get_quote("SIX")
    assert "search" in caught.value.message  # tells the user where to look the symbol up


def test_concurrent_misses_make_one_upstream_call(redis_url: str, clock: FakeClock, tmp_path: Path) -> None:
    inner = yahoo_transport([recorded("quote_AAPL")])
    provider = yahoo_provider(SlowTransport(inner, delay_seconds=0.3), tmp_path)
    callers = 30
    barrier = threading.Barrier(callers)
    results: list[float] = []
    errors: list[BaseException] = []

    def one_lambda() -> None:
        client = redis.Redis.from_url(redis_url)  # each "Lambda" has its own Redis connection
        service = MarketDataService(
            cache=RedisCache(client, key_prefix="svc:", clock=clock),
            chain=make_chain(client, provider, clock),
            timings=CacheTimings(stale_ttl_seconds=3600, lock_ttl_seconds=5, lock_wait_seconds=5),
            clock=clock,
        )
        barrier.wait()
        try:
            results.append(service.get_quote("AAPL").payload.price)
        except BaseException as exc:
            errors.append(exc)

    redis.Redis.from_url(redis_url).flushdb()
    threads = [threading.Thread(target=one_lambda) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert results == [244.6] * callers
    assert quote_calls(inner) == 1


def test_a_stuck_lock_holder_delays_but_does_not_block(make_service: MakeService, redis_client: redis.Redis) -> None:
    transport = yahoo_transport([recorded("quote_AAPL")])
    service = make_service(transport, lock_wait_seconds=0.2)
    held = RedisCache(redis_client, key_prefix="svc:").acquire_lock("quote:AAPL", ttl_seconds=30)
    assert held is not None  # another Lambda took the lock and died

    answer = service.get_quote("AAPL")

    assert answer.provenance.cached is False
    assert quote_calls(transport) == 1


def test_unreachable_redis_serves_uncached(make_service: MakeService, clock: FakeClock) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead = RedisCache.from_url(f"redis://127.0.0.1:{dead_port}/0", key_prefix="svc:", socket_timeout_seconds=0.2)
    transport = yahoo_transport([recorded("quote_AAPL")])
    service = make_service(transport, cache=dead)

    first, second = service.get_quote("AAPL"), service.get_quote("AAPL")

    assert (first.provenance.cached, second.provenance.cached) == (False, False)
    assert first.payload.price == 244.6
    assert quote_calls(transport) == 2
    assert service.cache_stats().available is False


def test_unreadable_cached_value_is_a_miss(make_service: MakeService, redis_client: redis.Redis) -> None:
    transport = yahoo_transport([recorded("quote_AAPL")])
    service = make_service(transport)
    RedisCache(redis_client, key_prefix="svc:").set(
        "quote:AAPL", '{"not": "a quote"}', fresh_ttl_seconds=60, stale_ttl_seconds=60
    )
    assert service.get_quote("AAPL").provenance.cached is False
    assert quote_calls(transport) == 1


def test_exhausted_deadline_fails_fast_without_calling_upstream(make_service: MakeService) -> None:
    transport = yahoo_transport([recorded("quote_AAPL")])
    service = make_service(transport)
    with pytest.raises(ServiceUnavailable, match="ran out of time"):
        service.get_quote("AAPL", deadline=time.monotonic() + 0.2)
    assert quote_calls(transport) == 0


# --- one stored document per key, decoded once per hit --------------------------------------------


def _json_in_strings(value: object) -> list[str]:
    """Strings anywhere inside ``value`` that hold a JSON object or array (JSON in JSON)."""
    if isinstance(value, dict):
        return [found for item in value.values() for found in _json_in_strings(item)]
    if isinstance(value, list):
        return [found for item in value for found in _json_in_strings(item)]
    if isinstance(value, str) and value[:1] in "{[" and value:
        try:
            json.loads(value)
        except ValueError:
            return []
        return [value]
    return []


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts every JSON decode in the process: json.loads and pydantic's own JSON parsing."""
    counts = {"json.loads": 0, "model_validate_json": 0}
    real_loads = json.loads
    real_validate_json: Callable[..., Any] = BaseModel.model_validate_json.__func__  # type: ignore[attr-defined]

    def loads(*args: Any, **kwargs: Any) -> Any:
        counts["json.loads"] += 1
        return real_loads(*args, **kwargs)

    def validate_json(cls: type[BaseModel], *args: Any, **kwargs: Any) -> Any:
        counts["model_validate_json"] += 1
        return real_validate_json(cls, *args, **kwargs)

    monkeypatch.setattr(json, "loads", loads)
    monkeypatch.setattr(BaseModel, "model_validate_json", classmethod(validate_json))
    return counts


def test_a_cache_hit_decodes_one_json_document_once(
    make_service: MakeService, redis_client: redis.Redis, decodes: dict[str, int]
) -> None:
    transport = yahoo_transport([recorded("quote_AAPL")])
    service = make_service(transport)
    service.get_quote("AAPL")

    # What is stored under the key: one JSON document, the quote and its provenance nested in it.
    document = json.loads(redis_client.get("svc:quote:AAPL"))  # type: ignore[arg-type]
    assert _json_in_strings(document) == []
    assert document["v"]["data"]["price"] == 244.6
    assert document["v"]["source"] == "yahoo"

    def one() -> Served[Quote] | None:
        return service.get_quote("AAPL")

    def batch() -> Served[Quote] | None:
        return service.get_quotes(["AAPL"])[0].quote

    for read in (one, batch):
        decodes.update({"json.loads": 0, "model_validate_json": 0})
        answer = read()
        assert answer is not None
        assert (answer.provenance.cached, answer.payload.price) == (True, 244.6)
        assert decodes == {"json.loads": 1, "model_validate_json": 0}
    assert quote_calls(transport) == 1


def test_quotes_and_negative_entries_store_one_document(make_service: MakeService, redis_client: redis.Redis) -> None:
    service = make_service(yahoo_transport([recorded("quote_AAPL")]))
    service.get_quotes(["AAPL"])
    with pytest.raises(SymbolNotFound):
        make_service(yahoo_transport([recorded("quote_SIX_unknown_symbol_empty")])).get_quote("SIX")
    keys = sorted(k.decode() for k in redis_client.keys("svc:*") if b":lock:" not in k)  # type: ignore[union-attr]
    assert {"svc:quote:AAPL", "svc:unknown:quote:SIX"} <= set(keys)
    for key in ("svc:quote:AAPL", "svc:unknown:quote:SIX"):
        assert _json_in_strings(json.loads(redis_client.get(key))) == [], key  # type: ignore[arg-type]


# --- batches take the miss lock too ----------------------------------------------------------------


def test_concurrent_batch_and_single_misses_make_one_upstream_call(
    redis_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    inner = yahoo_transport([recorded("quote_AAPL")])
    provider = yahoo_provider(SlowTransport(inner, delay_seconds=0.3), tmp_path)
    callers = 20
    barrier = threading.Barrier(callers)
    results: list[float | None] = []
    errors: list[BaseException] = []

    def one_lambda(batch: bool) -> None:
        client = redis.Redis.from_url(redis_url)
        service = MarketDataService(
            cache=RedisCache(client, key_prefix="svc:", clock=clock),
            chain=make_chain(client, provider, clock),
            timings=CacheTimings(stale_ttl_seconds=3600, lock_ttl_seconds=5, lock_wait_seconds=5),
            clock=clock,
        )
        barrier.wait()
        try:
            if batch:
                quote = service.get_quotes(["AAPL"])[0].quote
                results.append(quote.payload.price if quote is not None else None)
            else:
                results.append(service.get_quote("AAPL").payload.price)
        except BaseException as exc:
            errors.append(exc)

    redis.Redis.from_url(redis_url).flushdb()
    threads = [threading.Thread(target=one_lambda, args=(i % 2 == 0,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert results == [244.6] * callers
    assert quote_calls(inner) == 1


def test_a_batch_waits_for_a_symbol_another_caller_is_fetching(
    make_service: MakeService, redis_client: redis.Redis, clock: FakeClock
) -> None:
    transport = yahoo_transport([recorded("quote_AAPL")])
    other = RedisCache(redis_client, key_prefix="svc:", clock=clock)
    held = other.acquire_lock("quote:AAPL", ttl_seconds=30)
    assert held is not None
    quote = Quote(symbol="AAPL", price=250.0, as_of=datetime(2025, 2, 14, 21, 0, tzinfo=UTC))

    def fill() -> None:  # the other caller's fetch lands while the batch waits
        time.sleep(0.2)
        document = stored_document(quote, "yahoo", datetime(2025, 2, 14, 21, 0, 5, tzinfo=UTC))
        other.set("quote:AAPL", document, fresh_ttl_seconds=60, stale_ttl_seconds=60)
        other.release_lock("quote:AAPL", held)

    thread = threading.Thread(target=fill)
    thread.start()
    item = make_service(transport).get_quotes(["AAPL"])[0]
    thread.join()

    assert item.quote is not None
    provenance = item.quote.provenance
    assert (provenance.cached, provenance.stale, item.quote.payload.price) == (True, False, 250.0)
    assert quote_calls(transport) == 0


def test_a_batch_with_a_stuck_lock_holder_fetches_after_the_wait(
    make_service: MakeService, redis_client: redis.Redis
) -> None:
    transport = yahoo_transport([recorded("quote_AAPL")])
    assert RedisCache(redis_client, key_prefix="svc:").acquire_lock("quote:AAPL", ttl_seconds=30) is not None

    item = make_service(transport, lock_wait_seconds=0.2).get_quotes(["AAPL"])[0]

    assert item.quote is not None
    assert item.quote.provenance.cached is False
    assert quote_calls(transport) == 1


# --- results are returned, not accumulated ---------------------------------------------------------


def test_a_refresh_returns_what_it_fetched_with_its_upstream_calls(make_service: MakeService) -> None:
    transport = yahoo_transport([recorded("quote_AAPL")])
    service = make_service(transport)
    service.get_quote("AAPL")

    refreshed = service.refresh_quotes(["AAPL", "AAPL"])

    assert list(refreshed) == ["AAPL"]
    assert refreshed["AAPL"].provenance.cached is False  # fetched although the cached copy was fresh
    assert refreshed.upstream_calls == {"yahoo": 1}
    assert quote_calls(transport) == 2
    # A refresh is not a reader: no lookup counted.
    stats = service.cache_stats().kinds["quote"]
    assert (stats.hits, stats.misses) == (0, 1)
