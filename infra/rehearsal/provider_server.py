"""The rehearsal's stand-in for the providers' hosts: a local HTTP server answering from the replay data.

The functions in the emulator send ``GET <this server>/<vendor host><path>?<query>``
(chalicelib/adapters/rehearsal_transport.py); this server rebuilds ``https://<vendor host><path>?...``
and answers it with the local stack's replay transport (infra/local/replay), so the real provider
adapters (yfinance included) parse the same bytes as in `make run`. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from infra.local.replay.transport import YahooReplayTransport

_MAX_BODY = 64 * 1024


def _handler(transport: YahooReplayTransport) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()  # the replay transport keeps a list of what it saw: one request at a time

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            host, _, rest = self.path.lstrip("/").partition("/")
            length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
            body = self.rfile.read(length) if length else None
            prepared = requests.Request(self.command, f"https://{host}/{rest}", data=body).prepare()
            with lock:
                response = transport.send(prepared)
            content = response.content or b""
            self.send_response(response.status_code)
            self.send_header("Content-Type", response.headers.get("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = _answer  # noqa: N815 - http.server's naming
        do_POST = _answer  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: ARG002 - quiet: the run prints steps
            return None

    return Handler


class ProviderServer:
    """``with ProviderServer() as server: server.url``: serves until the block ends."""

    def __init__(self, transport: YahooReplayTransport | None = None) -> None:
        self.transport = transport or YahooReplayTransport()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.transport))
        self._thread = threading.Thread(target=self._server.serve_forever, name="rehearsal-provider", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ProviderServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
