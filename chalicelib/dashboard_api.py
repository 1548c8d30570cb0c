"""The dashboard's HTTP glue: the page (``GET /``), its files (``GET /dashboard/{asset}``) and its public
configuration (``GET /api/v1/config``), all served without a token by the same function as the REST API.

The files live in ``chalicelib/dashboard/`` so ``chalice package`` ships them. Only files of the allowed
types directly inside that folder are served, looked up by exact name: a path parameter can never reach
outside it. The page is served with a Content-Security-Policy that lets it load only its own files and
talk only to its own origin and the configured WebSocket URL.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from chalice.app import Request, Response

from chalicelib import bootstrap
from chalicelib.errors import NotFound
from chalicelib.models.dashboard import DashboardConfig
from chalicelib.settings import Settings, Stage

ASSET_DIR = Path(__file__).resolve().parent / "dashboard"
PAGE = "index.html"
PAGE_PATH = "/"
ASSET_PATH = "/dashboard/{asset}"
CONFIG_PATH = "/api/v1/config"
API_BASE = "api/v1/market"
# The local gateway's WebSocket path (infra/local/websocket.py); API Gateway's WebSocket URL has none.
LOCAL_WEBSOCKET_PATH = "/api/v1/market/ws/market-data"

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}\.(html|js|css|svg)$")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$")


@dataclass(frozen=True)
class Asset:
    body: str
    content_type: str
    etag: str


@functools.cache
def _assets() -> dict[str, Asset]:
    """Every servable file, read once per container (a few kB of text)."""
    assets = {}
    for path in sorted(ASSET_DIR.iterdir()):
        if path.is_file() and _ASSET_NAME.match(path.name):
            body = path.read_text(encoding="utf-8")
            digest = hashlib.sha256(body.encode()).hexdigest()[:20]
            assets[path.name] = Asset(body, _CONTENT_TYPES[path.suffix], f'"{digest}"')
    return assets


def websocket_url(settings: Settings, request: Request | None) -> str | None:
    """The configured URL; else locally the gateway the page came from (its Host header, checked), and
    deployed the management endpoint's API (https://{api}/{stage} is also the wss:// URL clients use)."""
    if settings.dashboard_websocket_url:
        return settings.dashboard_websocket_url
    if settings.stage is Stage.LOCAL:
        host = (request.headers.get("host") or "") if request is not None else ""
        return f"ws://{host}{LOCAL_WEBSOCKET_PATH}" if _HOST.match(host) else None
    endpoint = settings.websocket_management_endpoint
    if endpoint and endpoint.startswith("https://"):
        return "wss://" + endpoint.removeprefix("https://").rstrip("/")
    return None


def content_security_policy(ws_url: str | None) -> str:
    """Own origin only, plus the WebSocket API's origin for connect-src ('self' does not cover another
    host, and older browsers do not map it to ws: at all)."""
    connect = ["'self'"]
    if ws_url:
        parts = urlsplit(ws_url)
        connect.append(f"{parts.scheme}://{parts.netloc}")
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            f"connect-src {' '.join(connect)}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _asset_response(request: Request | None, asset: Asset, extra: dict[str, str] | None = None) -> Response:
    headers: dict[str, str | list[str]] = {
        "Content-Type": asset.content_type,
        "X-Content-Type-Options": "nosniff",
        # Revalidated on every load (a deploy changes them), answered 304 when unchanged.
        "Cache-Control": "no-cache",
        "ETag": asset.etag,
        "Referrer-Policy": "no-referrer",
        **(extra or {}),
    }
    if request is not None and (request.headers.get("if-none-match") or "") == asset.etag:
        return Response(body="", status_code=304, headers=headers)
    return Response(body=asset.body, status_code=200, headers=headers)


def page(request: Request | None) -> Response:
    # A deployed REST API lives under its stage (/dev/): the page's relative links need the trailing slash.
    path = str((request.context.get("path") or "") if request is not None else "")
    if path and not path.endswith("/"):
        return Response(body="", status_code=301, headers={"Location": f"{path}/", "Cache-Control": "no-store"})
    settings = bootstrap.container().settings
    csp = content_security_policy(websocket_url(settings, request))
    return _asset_response(request, _assets()[PAGE], {"Content-Security-Policy": csp, "X-Frame-Options": "DENY"})


def asset(request: Request | None, name: str) -> Response:
    found = _assets().get(name)
    if found is None or name == PAGE:
        raise NotFound(f"no dashboard file {name[:64]!r}")
    return _asset_response(request, found)


def config(request: Request | None) -> DashboardConfig:
    settings = bootstrap.container().settings
    return DashboardConfig(
        stage=settings.stage.value,
        websocket_url=websocket_url(settings, request),
        login_url=settings.dashboard_login_url,
        api_base=API_BASE,
        popular_symbols=list(settings.job_popular_symbols),
    )
