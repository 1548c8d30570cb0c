"""`GET /_local/dev-token` on the local gateway: the dashboard page's way to get a token by itself under
`make run` (nothing to paste). Local only: it is a route of this gateway, never of app.py, so no deployed
stage has it; and it answers loopback clients only (GATEWAY_HOST may be a wildcard address), asking for it
by a loopback name (`Host`): a page from elsewhere that rebinds its own name to 127.0.0.1 gets nothing.

Each token has its own subject (`dashboard-<random>`): every browser tab is its own user, with its own
per-user budgets, so a tab never spends another's (or the `make token` user's) request budget."""

from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import urlsplit

from aiohttp import web

from infra.local.gateway import RouteRegistrar
from infra.local.token import issue_dev_token

DEV_TOKEN_PATH = "/_local/dev-token"  # noqa: S105 - a path, not a secret
DEV_TOKEN_TTL_SECONDS = 12 * 3600


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False


def _names_loopback(host_header: str | None) -> bool:
    if not host_header:
        return False
    try:
        host = urlsplit(f"http://{host_header}").hostname
    except ValueError:
        return False
    return host == "localhost" or _is_loopback(host)


async def handle_dev_token(request: web.Request) -> web.Response:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if not (_is_loopback(request.remote) and _names_loopback(request.headers.get("Host"))):
        body = {"error": {"code": "forbidden", "message": "dev tokens are for this machine's browsers only"}}
        return web.json_response(body, status=403, headers=headers)
    subject = f"dashboard-{secrets.token_hex(4)}"
    token = issue_dev_token(subject, DEV_TOKEN_TTL_SECONDS)
    return web.json_response({"token": token, "sub": subject, "expires_in": DEV_TOKEN_TTL_SECONDS}, headers=headers)


def dev_token_registrar() -> RouteRegistrar:
    def register(app: web.Application) -> None:
        app.router.add_route("GET", DEV_TOKEN_PATH, handle_dev_token)

    return register
