"""The API Gateway Lambda authorizer (app.jwt_authorizer → chalicelib/gateway_auth.py), run the way
Chalice's local gateway runs it before a view: a bad token never reaches the handler, a good one is
allowed on every route (one cached answer per token serves them all), the handler still verifies."""

from __future__ import annotations

import time

import jwt
import pytest
from chalice.local import LocalGatewayAuthorizer
from chalice.test import Client

import app as app_module
from chalicelib import gateway_auth, http_api
from chalicelib.errors import ServiceUnavailable
from chalicelib.settings import LOCAL_DEV_JWT_SECRET
from infra.local.token import issue_dev_token
from tests.app.conftest import RUN_AUTHORIZER

QUOTE = "/api/v1/market/quote/AAPL"


@pytest.fixture
def gateway_client(client: Client, monkeypatch: pytest.MonkeyPatch) -> Client:
    """The test client with the authorizer running in front of the views, as API Gateway runs it."""
    monkeypatch.setattr(LocalGatewayAuthorizer, "authorize", RUN_AUTHORIZER)
    return client


@pytest.fixture
def handler_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Requests that reached the REST handler's own authentication (counted at that boundary)."""
    calls: list[str] = []
    original = http_api._authenticate_and_call

    def counting(request, resource, request_id, get_response):  # type: ignore[no-untyped-def]
        calls.append(resource)
        return original(request, resource, request_id, get_response)

    monkeypatch.setattr(http_api, "_authenticate_and_call", counting)
    return calls


def _gateway_status(client: Client, authorization: str) -> int:
    """The status API Gateway answers: Chalice's local gateway lets the authorizer's "Unauthorized"
    failure propagate, where API Gateway turns it into its 401 (UNAUTHORIZED gateway response)."""
    try:
        return client.http.get(QUOTE, headers={"Authorization": authorization}).status_code
    except gateway_auth.GatewayUnauthorized:
        return 401


def _expired_token() -> str:
    now = int(time.time())
    claims = {"sub": "u", "iss": "market-data-local", "aud": "market-data-dashboard", "iat": now - 120, "exp": now - 60}
    return jwt.encode(claims, LOCAL_DEV_JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer not-a-jwt", "Bearer " + "x" * 9000, "Basic dXNlcjpwYXNz", "Bearer " + "a.b.c"],
    ids=["junk", "oversized", "wrong-scheme", "bad-signature"],
)
def test_a_bad_token_is_refused_before_the_handler_runs(
    gateway_client: Client, handler_calls: list[str], authorization: str
) -> None:
    assert _gateway_status(gateway_client, authorization) == 401
    assert handler_calls == []


def test_an_expired_token_is_refused_before_the_handler_runs(gateway_client: Client, handler_calls: list[str]) -> None:
    assert _gateway_status(gateway_client, f"Bearer {_expired_token()}") == 401
    assert handler_calls == []


def test_a_valid_token_reaches_the_handler_which_verifies_it_again(
    gateway_client: Client, handler_calls: list[str]
) -> None:
    response = gateway_client.http.get(QUOTE, headers={"Authorization": f"Bearer {issue_dev_token()}"})
    assert response.status_code == 200, response.body
    assert handler_calls == ["/api/v1/market/quote/{symbol}"]


def test_public_documents_and_preflights_need_no_token(gateway_client: Client) -> None:
    assert gateway_client.http.get("/api/v1/openapi.json").status_code == 200
    preflight = gateway_client.http.request(
        "OPTIONS", QUOTE, headers={"Origin": "http://localhost:3000", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status_code == 204


def test_the_answer_allows_every_route_for_the_tokens_subject(client: Client) -> None:
    """API Gateway caches the answer per token for every route; a policy naming only the first route
    would make the cached answer refuse the next one."""
    event = {
        "type": "TOKEN",
        "authorizationToken": f"Bearer {issue_dev_token('alice')}",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:abc1234567/dev/GET/api/v1/market/quote/AAPL",
    }
    answer = app_module.jwt_authorizer(event, None)
    assert answer["principalId"] == "alice"
    (statement,) = answer["policyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Resource"] == ["arn:aws:execute-api:us-east-1:123456789012:abc1234567/dev/*/*"]


@pytest.mark.parametrize("authorization", [None, "", "Bearer junk", f"Bearer {'x' * 9000}"])
def test_a_refusal_is_api_gateways_unauthorized_with_the_reason_only_in_the_log(
    client: Client, authorization: str | None
) -> None:
    with pytest.raises(gateway_auth.GatewayUnauthorized) as raised:
        gateway_auth.authorize(authorization)
    assert str(raised.value) == "Unauthorized"  # the exact message API Gateway turns into its 401


def test_an_unreachable_identity_provider_is_a_failure_not_a_refusal(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JWKS outage must not look like a bad token: the gateway's AUTHORIZER_FAILURE answer (503)."""
    from chalicelib import bootstrap

    def unavailable(token: str) -> None:
        raise ServiceUnavailable("cannot reach the identity provider's JWKS endpoint", retry_after_seconds=5)

    monkeypatch.setattr(bootstrap.container().token_verifier, "verify", unavailable)
    with pytest.raises(ServiceUnavailable):
        gateway_auth.authorize(f"Bearer {issue_dev_token()}")
