"""The deploy rehearsal's provider transport (MARKET_DATA_SOURCE=rehearsal, refused on AWS by Settings).

The functions run in an emulator on this machine without network; the rehearsal's local server
(infra/rehearsal/provider_server.py) answers the providers' requests from the replay data. This
adapter sends each request there instead of to the vendor: ``https://<host><path>?<query>`` becomes
``<base>/<host><path>?<query>``, with the same caps (timeout, size, deadline) as the live transport.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from chalicelib.adapters.http import TimeoutCappedAdapter


class RehearsalTransport(TimeoutCappedAdapter):
    def __init__(self, base_url: str, cap_seconds: float, **kwargs: Any) -> None:
        self._base = base_url.rstrip("/")
        super().__init__(cap_seconds, **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        original = request.url
        request.url = f"{self._base}/{parts.hostname}{parts.path}" + (f"?{parts.query}" if parts.query else "")
        response = super().send(request, **kwargs)
        response.url = original or ""  # the caller sees the URL it asked for
        return response
