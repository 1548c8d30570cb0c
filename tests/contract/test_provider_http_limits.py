"""Provider responses are read with a byte cap and an overall deadline, against a real local HTTP server.

A server that declares or sends too many bytes, or trickles its body a byte at a time (every read
arrives well within the per-read timeout, so only an overall deadline can cut it), is cut; the cut is a
vendor failure: the breaker counts it and the chain moves on to the next vendor.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
import requests

from chalicelib.adapters.http import build_session
from chalicelib.adapters.providers.alpha_vantage import AlphaVantageProvider
from chalicelib.adapters.providers.base import ProviderRequest, fetch_json
from chalicelib.adapters.providers.fmp import FmpProvider
from chalicelib.adapters.redis_breaker import RedisCircuitBreaker
from chalicelib.adapters.redis_quotas import RedisQuotas
from chalicelib.errors import ProviderResponseCut
from chalicelib.models.market import DataKind
from chalicelib.ports import BreakerState, QuotaLimits
from chalicelib.services.provider_chain import ProviderChain, RetryPolicy
from tests.fakes.vendors_http import VendorTransport, vendor_recording

CAP_BYTES = 4096
DEADLINE_SECONDS = 1.0
PER_READ_SECONDS = 0.5  # each trickled byte comes sooner than this: per-read timeouts never fire
TRICKLE_INTERVAL_SECONDS = 0.1
SMALL = json.dumps([{"symbol": "IBM", "price": 1.0}]).encode()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *_: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        route = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        try:
            if route == "declared-big":
                self.send_header("Content-Length", str(CAP_BYTES * 10))
                self.end_headers()
                self.wfile.write(b"[" + b" " * 100)
            elif route == "streamed-big":  # no length: read until the server closes
                self.end_headers()
                for _ in range(20):
                    self.wfile.write(b" " * 1024)
                self.wfile.write(b"[]")
            elif route == "trickle" or route == "quote":  # FMP's /stable/quote: the trickling vendor
                body = b" " * 200 + SMALL
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for byte in body:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(TRICKLE_INTERVAL_SECONDS)
            else:
                self.send_header("Content-Length", str(len(SMALL)))
                self.end_headers()
                self.wfile.write(SMALL)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client cut us off: what the test wants


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _url(server: ThreadingHTTPServer, path: str) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/{path}"


def _session() -> requests.Session:
    return build_session(
        timeout_cap_seconds=PER_READ_SECONDS, max_response_bytes=CAP_BYTES, response_deadline_seconds=DEADLINE_SECONDS
    )


def _fetch(server: ThreadingHTTPServer, path: str) -> float:
    request = ProviderRequest(_url(server, path), {})
    started = time.monotonic()
    with pytest.raises(ProviderResponseCut) as caught:
        fetch_json(_session(), request, provider="fmp", timeout_seconds=PER_READ_SECONDS)
    assert caught.value.code == "provider_response_cut"
    assert caught.value.counts_as_failure
    assert not caught.value.retryable
    return time.monotonic() - started


def test_a_small_answer_passes_the_guard(server: ThreadingHTTPServer) -> None:
    reply = fetch_json(_session(), ProviderRequest(_url(server, "ok"), {}), provider="fmp", timeout_seconds=1)
    assert reply.payload == json.loads(SMALL)


def test_a_declared_length_over_the_cap_is_refused_before_reading(server: ThreadingHTTPServer) -> None:
    assert _fetch(server, "declared-big") < DEADLINE_SECONDS


def test_a_body_over_the_cap_without_a_length_is_cut_at_the_cap(server: ThreadingHTTPServer) -> None:
    assert _fetch(server, "streamed-big") < DEADLINE_SECONDS


def test_a_trickling_body_is_cut_at_the_overall_deadline(server: ThreadingHTTPServer) -> None:
    # 240 bytes at 10 a second would take 24 s; every single read is quick, so only the deadline cuts it.
    elapsed = _fetch(server, "trickle")
    assert DEADLINE_SECONDS - 0.05 <= elapsed < DEADLINE_SECONDS + PER_READ_SECONDS


def test_a_cut_response_is_a_vendor_failure_the_breaker_counts_and_the_chain_moves_on(
    server: ThreadingHTTPServer, redis_url: str, redis_client: redis.Redis
) -> None:
    # FMP (first) trickles through the real guarded session; Alpha Vantage (next) answers a recording.
    fmp = FmpProvider(_session(), api_key="fmp-key", base_url=f"http://127.0.0.1:{server.server_address[1]}")
    av_transport = VendorTransport().answer("alpha_vantage", vendor_recording("alpha_vantage", "GLOBAL_QUOTE_TSLA"))
    alpha_vantage = AlphaVantageProvider(build_session(timeout_cap_seconds=2, transport=av_transport), api_key="k")
    breaker = RedisCircuitBreaker(
        redis.Redis.from_url(redis_url), key_prefix="cut:", failure_threshold=1, cooldown_seconds=600
    )
    chain = ProviderChain(
        [fmp, alpha_vantage],
        quotas=RedisQuotas(redis.Redis.from_url(redis_url), key_prefix="cut:"),
        breaker=breaker,
        limits={"fmp": QuotaLimits(0, 0), "alpha_vantage": QuotaLimits(0, 0)},
        retry=RetryPolicy(max_attempts=3, base_seconds=0, max_backoff_seconds=0),
        provider_timeout_seconds=PER_READ_SECONDS,
    )

    started = time.monotonic()
    batch = chain.fetch_quotes(DataKind.QUOTE, ["TSLA"], deadline=None)

    assert batch.found["TSLA"][1] == "alpha_vantage", "the chain moved on to the next vendor"
    assert time.monotonic() - started < DEADLINE_SECONDS + PER_READ_SECONDS + 1
    assert len(server.hits) == 1, "a cut response is not retried (it would hold the Lambda as long again)"  # type: ignore[attr-defined]
    assert av_transport.calls == {"alpha_vantage": 1}
    status = breaker.status("fmp")
    assert status is not None
    assert status.state is BreakerState.OPEN  # threshold 1: the cut counted as a failure
    assert status.last_error == "provider_response_cut"
