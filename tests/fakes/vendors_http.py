"""One transport answering all four vendors at the HTTP layer, for chain tests.

Each vendor's data requests are answered by a script (a list of answers, the last one repeating) or a
callable; Yahoo's cookie/crumb handshake is answered on its own and not counted. Failures are injected
as HTTP statuses, garbage bodies or raised requests exceptions, exactly what the network would do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter

from infra.local.replay.transport import YAHOO_DIR, CannedResponse, make_response, recorded

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "providers"

VENDOR_HOSTS = {
    "query1.finance.yahoo.com": "yahoo",
    "query2.finance.yahoo.com": "yahoo",
    "financialmodelingprep.com": "fmp",
    "www.alphavantage.co": "alpha_vantage",
    "api.tiingo.com": "tiingo",
}
# yfinance's cookie/crumb handshake (both of its strategies): plumbing, not data requests.
_HANDSHAKE_HOSTS = {"fc.yahoo.com", "guce.yahoo.com", "consent.yahoo.com", "finance.yahoo.com"}

Answer = CannedResponse | Exception
Responder = Callable[[requests.PreparedRequest], Answer]


def yahoo_recording(name: str) -> CannedResponse:
    return recorded(name, YAHOO_DIR)


def vendor_recording(vendor: str, name: str) -> CannedResponse:
    return recorded(name, FIXTURES / vendor)


HTML_ERROR_PAGE = CannedResponse(503, b"<html><body><h1>Service Unavailable</h1></body></html>", "text/html")
TRUNCATED_JSON = CannedResponse(200, b'{"quoteResponse": {"result": [{"symbol": "AAPL", "regularMar')


class VendorTransport(BaseAdapter):
    def __init__(self, delay_seconds: float = 0.0) -> None:
        super().__init__()
        self._scripts: dict[str, list[Answer] | Responder] = {}
        self._lock = threading.Lock()
        self._delay = delay_seconds
        self.calls: dict[str, int] = {}
        self.urls: list[str] = []

    def answer(self, vendor: str, *answers: Answer) -> VendorTransport:
        self._scripts[vendor] = list(answers)
        return self

    def respond(self, vendor: str, responder: Responder) -> VendorTransport:
        self._scripts[vendor] = responder
        return self

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]  # noqa: ARG002
        url = request.url or ""
        host = urlsplit(url).hostname or ""
        if host in _HANDSHAKE_HOSTS:
            return make_response(request, CannedResponse(200, b"", "text/html"))
        if "/v1/test/getcrumb" in url:
            return make_response(request, CannedResponse(200, b"test-crumb", "text/plain"))
        vendor = VENDOR_HOSTS.get(host, "unknown")
        with self._lock:
            self.calls[vendor] = self.calls.get(vendor, 0) + 1
            self.urls.append(url)
            script = self._scripts.get(vendor)
            if script is None:
                answer: Answer = requests.ConnectionError(f"no route to {vendor} in this test")
            elif callable(script):
                answer = script(request)
            else:
                answer = script.pop(0) if len(script) > 1 else script[0]
        if self._delay:
            time.sleep(self._delay)
        if isinstance(answer, Exception):
            raise answer
        return make_response(request, answer)

    def close(self) -> None:
        return None
