"""HTTP sessions for provider adapters.

Every provider request has a real timeout, including the ones a library makes on its own behalf
(yfinance fetches its cookie and crumb with a 30 s default): the mounted transport caps whatever
timeout the caller passed. Tests and the local replay source mount their own transport instead,
which answers at the HTTP layer, so the real adapter code runs unchanged.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import BaseAdapter, HTTPAdapter

USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) market-data-service/1.0"


class TimeoutCappedAdapter(HTTPAdapter):
    """An HTTPAdapter whose requests never wait longer than ``cap_seconds`` (connect and read)."""

    def __init__(self, cap_seconds: float, **kwargs: Any) -> None:
        self._cap = cap_seconds
        super().__init__(**kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        timeout = kwargs.get("timeout")
        if timeout is None:
            kwargs["timeout"] = self._cap
        elif isinstance(timeout, tuple):
            kwargs["timeout"] = tuple(self._cap if t is None else min(float(t), self._cap) for t in timeout)
        else:
            kwargs["timeout"] = min(float(timeout), self._cap)
        return super().send(request, **kwargs)


def build_session(*, timeout_cap_seconds: float, transport: BaseAdapter | None = None) -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    adapter: BaseAdapter = transport if transport is not None else TimeoutCappedAdapter(timeout_cap_seconds)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
