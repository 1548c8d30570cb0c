"""HTTP sessions for provider adapters.

Every provider request has a real timeout, including the ones a library makes on its own behalf
(yfinance fetches its cookie and crumb with a 30 s default): the mounted transport caps whatever
timeout the caller passed. It also reads every response body itself, up to a byte cap and within an
overall deadline: a per-read timeout alone lets a server that sends one byte every few seconds hold
the Lambda until its own timeout, and an unbounded read lets a huge answer fill its memory. A cut
response raises ``ResponseCut`` (a requests exception), which the adapters turn into a vendor failure.

Tests and the local replay source mount their own transport instead, which answers at the HTTP layer,
so the real adapter code runs unchanged.
"""

from __future__ import annotations

import time
from typing import Any

import requests
import urllib3
from requests.adapters import BaseAdapter, HTTPAdapter

from chalicelib import observability

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) market-data-service/1.0"

DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
DEFAULT_RESPONSE_DEADLINE_SECONDS = 8.0
_CHUNK_BYTES = 64 * 1024


class ResponseCut(requests.RequestException):
    """The response was abandoned before its end: too large or too slow."""


class ResponseTooLarge(ResponseCut):
    pass


class ResponseTooSlow(ResponseCut):
    pass


class TimeoutCappedAdapter(HTTPAdapter):
    """An HTTPAdapter whose requests never wait longer than ``cap_seconds`` per connect or read, whose
    whole exchange (connect, headers, body) ends within ``deadline_seconds``, and whose bodies are read
    up to ``max_bytes`` (decoded) only."""

    def __init__(
        self,
        cap_seconds: float,
        *,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        deadline_seconds: float = DEFAULT_RESPONSE_DEADLINE_SECONDS,
        **kwargs: Any,
    ) -> None:
        self._cap = cap_seconds
        self._max_bytes = max_bytes
        self._deadline = deadline_seconds
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        started = time.monotonic()
        cap = min(self._cap, self._deadline)
        timeout = kwargs.get("timeout")
        if timeout is None:
            kwargs["timeout"] = cap
        elif isinstance(timeout, tuple):
            kwargs["timeout"] = tuple(cap if t is None else min(float(t), cap) for t in timeout)
        else:
            kwargs["timeout"] = min(float(timeout), cap)
        # The body is read here, not by requests, so the cap and the deadline apply to it.
        kwargs["stream"] = True
        response = super().send(request, **kwargs)
        try:
            self._read_body(response, started + self._deadline)
        except BaseException:
            response.close()
            raise
        return response

    def _read_body(self, response: requests.Response, deadline: float) -> None:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise ResponseTooLarge(f"response declares {declared} bytes, over the {self._max_bytes}-byte cap")
        raw = response.raw
        chunks: list[bytes] = []
        total = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ResponseTooSlow(f"response not complete within {self._deadline:.1f}s")
            _set_read_timeout(raw, min(remaining, self._cap))
            try:
                chunk = raw.read1(_CHUNK_BYTES, decode_content=True)
            except (TimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise ResponseTooSlow(f"response not complete within {self._deadline:.1f}s") from None
                raise requests.exceptions.ReadTimeout(f"read timed out ({type(exc).__name__})") from None
            except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError, OSError) as exc:
                raise requests.exceptions.ConnectionError(f"response broken ({type(exc).__name__})") from None
            if not chunk:
                break
            total += len(chunk)
            if total > self._max_bytes:
                raise ResponseTooLarge(f"response over the {self._max_bytes}-byte cap")
            chunks.append(chunk)
        response._content = b"".join(chunks)
        response._content_consumed = True  # type: ignore[attr-defined]
        raw.release_conn()  # body fully read: the connection goes back to the pool for the next call


def _set_read_timeout(raw: Any, seconds: float) -> None:
    """Shorten the socket's read timeout so the next read cannot outlive the deadline."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is not None:
        sock.settimeout(max(0.01, seconds))


def build_session(
    *,
    timeout_cap_seconds: float,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    response_deadline_seconds: float = DEFAULT_RESPONSE_DEADLINE_SECONDS,
    transport: BaseAdapter | None = None,
) -> requests.Session:
    observability.trace_library("requests")  # X-Ray subsegments per provider call when tracing is on
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    adapter: BaseAdapter = (
        transport
        if transport is not None
        else TimeoutCappedAdapter(
            timeout_cap_seconds, max_bytes=max_response_bytes, deadline_seconds=response_deadline_seconds
        )
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
