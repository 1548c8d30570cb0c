"""Authentication through the real Chalice app: every route needs a valid Bearer JWT.

Each test builds its own container from explicit settings (replay data, the suite's own Redis) and
installs it with ``bootstrap.use_container``, so a valid token gets a genuine 200 from recorded data
and every refusal is the middleware's, not a missing dependency's.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from chalice.test import Client, HTTPResponse
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import app
from chalicelib import bootstrap, observability
from chalicelib.bootstrap import Container
from chalicelib.errors import UNAUTHORIZED_MESSAGE
from chalicelib.settings import LOCAL_DEV_JWT_SECRET, load_settings
from infra.local.replay.transport import YahooReplayTransport
from infra.local.token import issue_dev_token

REPO_ROOT = Path(__file__).resolve().parents[2]
QUOTE = "/api/v1/market/quote/AAPL"
STATS = "/api/v1/market/cache/stats"
ROUTES = [QUOTE, STATS]
ISSUER = "market-data-local"
AUDIENCE = "market-data-dashboard"
KID = "test-signing-key-1"
OTHER_SECRET = "another-private-hs256-secret-0123456789"


# --- token building --------------------------------------------------------------------------------------


class _Omit:
    """Sentinel: drop this claim from the token."""


OMIT = _Omit()


def claims(**overrides: object) -> dict[str, Any]:
    """Valid claims for the local issuer/audience, with ``overrides`` applied (OMIT removes a claim)."""
    now = int(time.time())
    payload: dict[str, Any] = {"sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    for name, value in overrides.items():
        if isinstance(value, _Omit):
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def segment(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


def hand_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return f"{segment(header)}.{segment(payload)}.{b64url(signature)}"


def hand_hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    """HS256 by hand: pyjwt refuses PEM keys as HMAC secrets, an attacker does not."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def hs256(payload: dict[str, Any], secret: str = LOCAL_DEV_JWT_SECRET) -> str:
    return jwt.encode(payload, secret, algorithm="HS256")


@functools.cache
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def rs256(payload: dict[str, Any], *, key: rsa.RSAPrivateKey | None = None, kid: str | None = KID) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key or rsa_key(), algorithm="RS256", headers=headers)


def with_payload(token: str, payload: dict[str, Any]) -> str:
    """``token`` with its payload replaced and its original signature kept."""
    header, _, signature = token.split(".")
    return f"{header}.{segment(payload)}.{signature}"


def with_flipped_signature(token: str) -> str:
    """``token`` with the first signature byte changed (a real change: no base64 padding-bit trick)."""
    header, payload, signature = token.split(".")
    raw = bytearray(b64url_decode(signature))
    raw[0] ^= 0xFF
    return f"{header}.{payload}.{b64url(bytes(raw))}"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def public_key_pem(fmt: serialization.PublicFormat) -> bytes:
    return rsa_key().public_key().public_bytes(serialization.Encoding.PEM, fmt)


# --- a real JWKS endpoint --------------------------------------------------------------------------------


class JwksServer:
    """A local HTTP server answering every GET with one canned body, on a port the OS picks."""

    def __init__(self, body: bytes, *, status: int = 200, content_type: str = "application/json") -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                paths.append(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:  # silence the per-request stderr line
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/jwks.json"
        self._running = True

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)


def jwks_document() -> bytes:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key().public_key()))
    jwk.update(kid=KID, use="sig", alg="RS256")
    return json.dumps({"keys": [jwk]}).encode()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer(jwks_document())
    yield server
    server.stop()


# --- the app under test ----------------------------------------------------------------------------------


@dataclass
class App:
    client: Client
    transport: YahooReplayTransport

    def get(self, path: str, authorization: str | None) -> HTTPResponse:
        headers = {} if authorization is None else {"Authorization": authorization}
        return self.client.http.get(path, headers=headers)


AppFactory = Callable[..., App]


@pytest.fixture
def make_app(
    redis_url: str, redis_client: redis.Redis, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[AppFactory]:
    """Build a container from explicit settings (plus ``overrides``) and serve the app from it."""

    def build(**overrides: str) -> App:
        environ = {
            "STAGE": "local",
            "MARKET_DATA_SOURCE": "replay",
            "REDIS_URL": redis_url,
            "YFINANCE_CACHE_DIR": str(tmp_path / "yf"),
            **overrides,
        }
        transport = YahooReplayTransport()
        bootstrap.use_container(Container(load_settings(environ=environ), replay_transport=transport))
        return App(Client(app.app, stage_name="local", project_dir=str(REPO_ROOT)), transport)

    yield build
    bootstrap.use_container(None)


@pytest.fixture
def hs_app(make_app: AppFactory) -> App:
    return make_app()


def rs_app_for(make_app: AppFactory, jwks_url: str) -> App:
    return make_app(JWT_ALGORITHM="RS256", JWT_JWKS_URL=jwks_url)


def header(response: HTTPResponse, name: str) -> str | None:
    return next((value for key, value in response.headers.items() if key.lower() == name.lower()), None)


def assert_error(response: HTTPResponse, status: int, code: str) -> str:
    """The standard error body with ``status``/``code``; returns its message."""
    assert response.status_code == status, response.body
    body = response.json_body
    assert isinstance(body, dict)
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["request_id"], str)
    assert error["request_id"]
    return error["message"]


# Why each 401 happened, as the service logged it (bodies are generic; the reason is for the logs only).
_LOGGED_REASONS: list[str] = []


class _ReasonRecorder(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        reason = getattr(record, "reason", None)
        if isinstance(reason, str):
            _LOGGED_REASONS.append(reason)


@pytest.fixture(autouse=True)
def _record_logged_reasons() -> Iterator[None]:
    handler = _ReasonRecorder()
    service_logger = logging.getLogger(observability.logger.name)  # the standard logger under powertools'
    service_logger.addHandler(handler)
    try:
        yield
    finally:
        service_logger.removeHandler(handler)
        _LOGGED_REASONS.clear()


def assert_unauthorized(response: HTTPResponse, reason: str) -> None:
    """A generic 401 body (it tells a prober nothing about which part of its token failed), while the
    log says exactly why: ``reason`` proves the refusal was for the expected cause."""
    message = assert_error(response, 401, "unauthorized")
    assert message == UNAUTHORIZED_MESSAGE
    assert any(reason in logged for logged in _LOGGED_REASONS), (reason, _LOGGED_REASONS)
    _LOGGED_REASONS.clear()
    challenge = header(response, "WWW-Authenticate")
    assert challenge is not None
    assert challenge.startswith("Bearer")


def assert_quote_served(response: HTTPResponse) -> None:
    assert response.status_code == 200, response.body
    body = response.json_body
    assert body["symbol"] == "AAPL"
    assert body["source"] == "replay"
    assert isinstance(body["price"], float)


# --- HS256 (the local configuration) ---------------------------------------------------------------------

# (id, Authorization header or None, a fragment of the expected message: proves *why* it was refused)
HS256_REFUSALS: list[tuple[str, Callable[[], str | None], str]] = [
    ("missing-header", lambda: None, "missing Authorization header"),
    ("basic-scheme", lambda: "Basic abc", "must be 'Bearer <token>'"),
    ("bearer-without-token", lambda: "Bearer", "must be 'Bearer <token>'"),
    ("bearer-with-blank-token", lambda: "Bearer    ", "must be 'Bearer <token>'"),
    ("token-scheme", lambda: "Token x", "must be 'Bearer <token>'"),
    ("token-without-scheme", lambda: hs256(claims()), "must be 'Bearer <token>'"),
    ("garbage-token", lambda: bearer("abc.def.ghi"), "token is invalid"),
    ("too-long", lambda: bearer(hs256(claims(pad="x" * 9000))), "too long"),
    (
        "alg-none-by-hand",
        lambda: bearer(hand_token({"alg": "none", "typ": "JWT"}, claims())),
        "algorithm is not accepted",
    ),
    ("alg-none-by-pyjwt", lambda: bearer(jwt.encode(claims(), "", algorithm="none")), "algorithm is not accepted"),
    ("expired-an-hour-ago", lambda: bearer(hs256(claims(exp=int(time.time()) - 3600))), "expired"),
    ("expired-1s-ago-no-leeway", lambda: bearer(hs256(claims(exp=int(time.time()) - 1))), "expired"),
    ("nbf-in-future", lambda: bearer(hs256(claims(nbf=int(time.time()) + 3600))), "not valid yet"),
    ("iat-in-future", lambda: bearer(hs256(claims(iat=int(time.time()) + 3600))), "not valid yet"),
    ("missing-exp", lambda: bearer(hs256(claims(exp=OMIT))), "'exp'"),
    ("missing-sub", lambda: bearer(hs256(claims(sub=OMIT))), "'sub'"),
    ("missing-iss", lambda: bearer(hs256(claims(iss=OMIT))), "'iss'"),
    ("missing-aud", lambda: bearer(hs256(claims(aud=OMIT))), "'aud'"),
    ("empty-sub", lambda: bearer(hs256(claims(sub=""))), "subject is empty"),
    ("wrong-aud", lambda: bearer(hs256(claims(aud="another-app"))), "audience"),
    ("wrong-iss", lambda: bearer(hs256(claims(iss="https://evil.example.com"))), "issuer"),
    (
        "payload-tampered-sub-admin",
        lambda: bearer(with_payload(hs256(claims()), claims(sub="admin"))),
        "token is invalid",
    ),
    ("signature-altered", lambda: bearer(with_flipped_signature(hs256(claims()))), "token is invalid"),
    ("signature-stripped", lambda: bearer(hs256(claims()).rsplit(".", 1)[0] + "."), "token is invalid"),
    ("other-hs256-secret", lambda: bearer(hs256(claims(), OTHER_SECRET)), "token is invalid"),
    ("rs256-signed-on-hs256-app", lambda: bearer(rs256(claims())), "algorithm is not accepted"),
]


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    ("authorization", "reason"),
    [pytest.param(make, reason, id=case_id) for case_id, make, reason in HS256_REFUSALS],
)
def test_hs256_app_refuses_bad_credentials_on_every_route(
    hs_app: App, path: str, authorization: Callable[[], str | None], reason: str
) -> None:
    """GIVEN the HS256 app WHEN a request carries bad or no credentials THEN 401 before the view runs."""
    response = hs_app.get(path, authorization())

    assert_unauthorized(response, reason)
    assert hs_app.transport.requests_seen == []  # no provider call: refused in the middleware


def test_sanity_the_tampered_token_differs_only_in_its_payload() -> None:
    """The tampering helper must really change the claims and keep the original signature."""
    original = hs256(claims())
    tampered = with_payload(original, claims(sub="admin"))

    assert tampered != original
    assert tampered.split(".")[0] == original.split(".")[0]
    assert tampered.split(".")[2] == original.split(".")[2]
    assert json.loads(b64url_decode(tampered.split(".")[1]))["sub"] == "admin"


def test_a_dev_token_gets_the_quote(hs_app: App) -> None:
    """GIVEN a token from `make token` (issue_dev_token) WHEN GET quote THEN 200 from recorded data."""
    response = hs_app.get(QUOTE, bearer(issue_dev_token()))

    assert_quote_served(response)
    assert hs_app.transport.requests_seen  # really served through the replay transport
    assert header(response, "WWW-Authenticate") is None


def test_an_operator_token_gets_the_cache_stats_and_a_plain_token_is_forbidden(hs_app: App) -> None:
    response = hs_app.get(STATS, bearer(issue_dev_token(operator=True)))

    assert response.status_code == 200, response.body
    assert response.json_body["available"] is True
    assert_error(hs_app.get(STATS, bearer(issue_dev_token())), 403, "forbidden")


def test_a_free_form_admin_claim_is_not_the_operator_role(hs_app: App) -> None:
    """Only the identity provider's group or scope makes an operator; a self-described admin does not."""
    assert_error(hs_app.get(STATS, bearer(hs256(claims(admin=True)))), 403, "forbidden")
    assert_error(hs_app.get(STATS, bearer(hs256(claims(**{"cognito:groups": ["viewers"]})))), 403, "forbidden")
    assert_error(hs_app.get(STATS, bearer(hs256(claims(scope="openid market-data/read")))), 403, "forbidden")
    by_scope = hs_app.get(STATS, bearer(hs256(claims(scope="openid market-data/operator"))))
    assert by_scope.status_code == 200, by_scope.body


def test_the_bearer_scheme_is_case_insensitive(hs_app: App) -> None:
    """RFC 7235: auth schemes are case-insensitive."""
    assert_quote_served(hs_app.get(QUOTE, f"bearer {issue_dev_token()}"))


def test_configured_leeway_accepts_a_token_expired_a_second_ago(make_app: AppFactory) -> None:
    """The refusal of a 1 s-expired token above is the default leeway of 0, not a broken token."""
    leeway_app = make_app(JWT_LEEWAY_SECONDS="30")

    assert_quote_served(leeway_app.get(QUOTE, bearer(hs256(claims(exp=int(time.time()) - 1)))))


def test_a_configured_private_secret_replaces_the_dev_secret(make_app: AppFactory) -> None:
    private_app = make_app(JWT_SECRET=OTHER_SECRET)

    assert_quote_served(private_app.get(QUOTE, bearer(hs256(claims(), OTHER_SECRET))))
    assert_unauthorized(private_app.get(QUOTE, bearer(hs256(claims()))), "token is invalid")


# --- RS256 against a JWKS endpoint -----------------------------------------------------------------------


def test_rs256_token_with_a_known_kid_gets_the_quote(make_app: AppFactory, jwks_server: JwksServer) -> None:
    rs_app = rs_app_for(make_app, jwks_server.url)

    assert_quote_served(rs_app.get(QUOTE, bearer(rs256(claims()))))
    assert jwks_server.paths == ["/jwks.json"]


RS256_REFUSALS: list[tuple[str, Callable[[], str], str]] = [
    ("unknown-kid", lambda: bearer(rs256(claims(), kid="rotated-away")), "unknown key"),
    ("no-kid", lambda: bearer(rs256(claims(), kid=None)), "no key id"),
    ("other-rsa-key-same-kid", lambda: bearer(rs256(claims(), key=other_rsa_key())), "token is invalid"),
    ("signature-altered", lambda: bearer(with_flipped_signature(rs256(claims()))), "token is invalid"),
    ("payload-tampered", lambda: bearer(with_payload(rs256(claims()), claims(sub="admin"))), "token is invalid"),
    ("expired", lambda: bearer(rs256(claims(exp=int(time.time()) - 1))), "expired"),
    ("wrong-aud", lambda: bearer(rs256(claims(aud="another-app"))), "audience"),
    (
        "alg-none",
        lambda: bearer(hand_token({"alg": "none", "typ": "JWT", "kid": KID}, claims())),
        "algorithm is not accepted",
    ),
    ("hs256-dev-secret", lambda: bearer(hs256(claims())), "algorithm is not accepted"),
]


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    ("authorization", "reason"),
    [pytest.param(make, reason, id=case_id) for case_id, make, reason in RS256_REFUSALS],
)
def test_rs256_app_refuses_bad_tokens_on_every_route(
    make_app: AppFactory, jwks_server: JwksServer, path: str, authorization: Callable[[], str], reason: str
) -> None:
    rs_app = rs_app_for(make_app, jwks_server.url)

    assert_unauthorized(rs_app.get(path, authorization()), reason)
    assert rs_app.transport.requests_seen == []


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    "pem_format",
    [serialization.PublicFormat.SubjectPublicKeyInfo, serialization.PublicFormat.PKCS1],
    ids=["spki-pem", "pkcs1-pem"],
)
def test_rs256_app_refuses_hs256_signed_with_the_public_key(
    make_app: AppFactory, jwks_server: JwksServer, path: str, pem_format: serialization.PublicFormat
) -> None:
    """The classic confusion attack: HMAC-SHA256 keyed with the (public) RSA key's PEM bytes.

    GIVEN the RS256 app WHEN the token says alg=HS256 with the real kid THEN 401, and the JWKS is not
    even fetched (the header's alg is refused first).
    """
    forged = hand_hs256({"alg": "HS256", "typ": "JWT", "kid": KID}, claims(sub="admin"), public_key_pem(pem_format))
    rs_app = rs_app_for(make_app, jwks_server.url)

    assert_unauthorized(rs_app.get(path, bearer(forged)), "algorithm is not accepted")
    assert jwks_server.paths == []


@pytest.mark.parametrize("path", ROUTES)
def test_unreachable_jwks_is_503_not_401(make_app: AppFactory, path: str) -> None:
    """GIVEN the JWKS server is down at cold start WHEN a valid token arrives THEN 503, retryable."""
    server = JwksServer(jwks_document())
    server.stop()  # its port is now closed
    rs_app = rs_app_for(make_app, server.url)

    response = rs_app.get(path, bearer(rs256(claims())))

    assert_error(response, 503, "service_unavailable")
    assert header(response, "Retry-After") == "5"
    assert header(response, "WWW-Authenticate") is None


def test_jwks_answering_5xx_is_503(make_app: AppFactory) -> None:
    server = JwksServer(b'{"message":"internal error"}', status=500)
    try:
        rs_app = rs_app_for(make_app, server.url)

        response = rs_app.get(QUOTE, bearer(rs256(claims())))
    finally:
        server.stop()

    assert_error(response, 503, "service_unavailable")
    assert server.paths == ["/jwks.json"]


def test_fetched_keys_survive_a_later_jwks_outage(make_app: AppFactory, jwks_server: JwksServer) -> None:
    """Keys are cached per container: once fetched, an IdP outage does not log everyone out."""
    rs_app = rs_app_for(make_app, jwks_server.url)
    assert_quote_served(rs_app.get(QUOTE, bearer(rs256(claims()))))

    jwks_server.stop()

    assert_quote_served(rs_app.get(QUOTE, bearer(rs256(claims(sub="user-2")))))
    assert jwks_server.paths == ["/jwks.json"]


@pytest.mark.parametrize(
    "body",
    [b"<html>maintenance</html>", b'{"keys": []}', b"{}", b"[]"],
    ids=["html", "empty-keys", "empty-object", "json-array"],
)
def test_a_misbehaving_jwks_endpoint_is_503(make_app: AppFactory, body: bytes) -> None:
    server = JwksServer(body)
    try:
        rs_app = rs_app_for(make_app, server.url)

        response = rs_app.get(QUOTE, bearer(rs256(claims())))
    finally:
        server.stop()

    assert_error(response, 503, "service_unavailable")
