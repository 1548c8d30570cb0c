"""The dashboard's routes through the Chalice app: the page, its files and its configuration are public
(no token), the page carries its Content-Security-Policy, only the dashboard folder's own files are served,
and the configuration names the WebSocket URL and login URL of the stage."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from chalice.app import Request
from chalice.test import Client

from chalicelib import dashboard_api
from chalicelib.errors import ConfigurationError
from chalicelib.settings import load_settings
from chalicelib.settings_lists import REPLAY_POPULAR_SYMBOLS

DEPLOYED = {
    "STAGE": "dev",
    "JWT_SECRET": "a-private-secret-of-at-least-32-characters",
    "JWT_ISSUER": "https://idp.example.com/",
    "JWT_AUDIENCE": "market-data-api",
    "CORS_ALLOWED_ORIGINS": "https://dashboard.example.com",
    "WEBSOCKET_MANAGEMENT_ENDPOINT": "https://abc123.execute-api.us-east-1.amazonaws.com/dev",
}


def _links(html: str) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]+)"', html)


def test_the_page_is_public_with_its_csp_and_only_relative_links(client: Client) -> None:
    response = client.http.get("/", headers={"Host": "127.0.0.1:8000"})  # no token
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp
    assert "connect-src 'self' ws://127.0.0.1:8000;" in csp
    assert "'unsafe-inline'" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    links = _links(response.body.decode())
    assert links, "the page links its files"
    # A deployed REST API serves the page under its stage prefix (/dev/): absolute paths would miss it.
    assert [link for link in links if link.startswith(("/", "http:", "https:"))] == []


def test_every_file_the_page_links_is_served_without_a_token_and_revalidates(client: Client) -> None:
    page = client.http.get("/").body.decode()
    modules = {m for m in re.findall(r'from "\./([a-z-]+\.js)"', (dashboard_api.ASSET_DIR / "app.js").read_text())}
    names = {link.removeprefix("dashboard/") for link in _links(page) if link.startswith("dashboard/")} | modules
    assert {"app.js", "style.css", "icon.svg", "api.js", "stream.js", "charts.js"} <= names
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
    for name in names:
        response = client.http.get(f"/dashboard/{name}")
        assert response.status_code == 200, name
        assert response.headers["Content-Type"] == types[Path(name).suffix]
        assert response.body.decode() == (dashboard_api.ASSET_DIR / name).read_text()
        etag = response.headers["ETag"]
        again = client.http.get(f"/dashboard/{name}", headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.body in (b"", "")


@pytest.mark.parametrize("name", ["nope.js", "index.html", "..%2Fapp.py", "app.py", "README.md", "APP.JS"])
def test_anything_but_the_folders_own_files_is_a_404(client: Client, name: str) -> None:
    response = client.http.get(f"/dashboard/{name}")
    assert response.status_code == 404
    assert json.loads(response.body)["error"]["code"] == "not_found"


def test_the_config_is_public_and_names_the_websocket_url_of_the_gateway_the_page_came_from(client: Client) -> None:
    response = client.http.get("/api/v1/config", headers={"Host": "127.0.0.1:8123"})
    assert response.status_code == 200
    body = json.loads(response.body)
    assert body == {
        "stage": "local",
        "websocket_url": "ws://127.0.0.1:8123/api/v1/market/ws/market-data",
        "login_url": None,
        "api_base": "api/v1/market",
        "popular_symbols": list(REPLAY_POPULAR_SYMBOLS),
    }
    assert client.http.get("/api/v1/config?x=1").status_code == 400


def test_a_host_header_that_is_not_a_host_is_never_reflected(client: Client) -> None:
    body = json.loads(client.http.get("/api/v1/config", headers={"Host": "evil.example; script-src *"}).body)
    assert body["websocket_url"] is None
    csp = client.http.get("/", headers={"Host": "evil.example; script-src *"}).headers["Content-Security-Policy"]
    assert "evil" not in csp
    assert "connect-src 'self';" in csp


def test_a_deployed_stage_takes_the_websocket_url_from_its_management_endpoint_or_its_setting() -> None:
    settings = load_settings(DEPLOYED)
    assert dashboard_api.websocket_url(settings, None) == "wss://abc123.execute-api.us-east-1.amazonaws.com/dev"
    assert "connect-src 'self' wss://abc123.execute-api.us-east-1.amazonaws.com;" in (
        dashboard_api.content_security_policy(dashboard_api.websocket_url(settings, None))
    )
    custom = load_settings({**DEPLOYED, "DASHBOARD_WEBSOCKET_URL": "wss://stream.example.com"})
    assert dashboard_api.websocket_url(custom, None) == "wss://stream.example.com"
    with_login = load_settings({**DEPLOYED, "DASHBOARD_LOGIN_URL": "https://login.example.com/authorize"})
    assert with_login.dashboard_login_url == "https://login.example.com/authorize"
    with pytest.raises(ConfigurationError, match="DASHBOARD_LOGIN_URL"):
        load_settings({**DEPLOYED, "DASHBOARD_LOGIN_URL": "http://login.example.com/"})
    with pytest.raises(ConfigurationError, match="DASHBOARD_WEBSOCKET_URL"):
        load_settings({**DEPLOYED, "DASHBOARD_WEBSOCKET_URL": "ws://stream.example.com"})


def test_the_page_under_a_stage_prefix_without_its_slash_is_redirected_to_it(client: Client) -> None:
    event = {
        "httpMethod": "GET",
        "path": "/",
        "headers": {"Host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {"path": "/dev", "resourcePath": "/", "httpMethod": "GET", "stage": "dev"},
        "body": None,
        "isBase64Encoded": False,
    }
    response = dashboard_api.page(Request(event))
    assert response.status_code == 301
    assert response.headers["Location"] == "/dev/"
