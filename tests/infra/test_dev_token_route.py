"""The local gateway's dev-token route (the dashboard's token under `make run`): a token the local stage
accepts, a subject of its own per call, never cached, and refused to anything but a loopback client."""

from __future__ import annotations

import asyncio
import json
from unittest import mock

import jwt
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from chalicelib.settings import load_settings
from infra.local.dev_token import DEV_TOKEN_PATH, handle_dev_token


def _call(peer: str, host: str = "127.0.0.1:8000") -> web.Response:
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (peer, 50000) if name == "peername" else default
    request = make_mocked_request("GET", DEV_TOKEN_PATH, headers={"Host": host}, transport=transport)
    return asyncio.run(handle_dev_token(request))


def test_a_loopback_client_gets_a_local_token_with_its_own_subject() -> None:
    settings = load_settings({})
    bodies = []
    for _ in range(2):
        response = _call("127.0.0.1")
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-store"
        assert response.text is not None
        bodies.append(json.loads(response.text))
    claims = jwt.decode(
        bodies[0]["token"],
        settings.effective_jwt_secret,
        algorithms=["HS256"],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == bodies[0]["sub"]
    assert claims["sub"].startswith("dashboard-")
    assert bodies[0]["sub"] != bodies[1]["sub"]
    assert _call("::1", "[::1]:8000").status == 200
    assert _call("127.0.0.1", "localhost:8000").status == 200


def test_any_other_client_is_refused() -> None:
    for peer in ("192.168.1.20", "10.0.0.5", "not-an-address"):
        response = _call(peer)
        assert response.status == 403
        assert "token" not in json.loads(response.text or "{}")


def test_a_page_that_rebinds_its_own_name_to_this_machine_is_refused() -> None:
    # DNS rebinding: the browser connects from loopback but names the attacker's host.
    for host in ("evil.example:8000", "evil.example", "", "127.0.0.1.evil.example:8000"):
        response = _call("127.0.0.1", host)
        assert response.status == 403
        assert "token" not in json.loads(response.text or "{}")
