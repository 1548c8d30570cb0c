"""The API Gateway Lambda authorizer of the REST routes: bad tokens stop at the gateway.

API Gateway calls it with the Authorization header before the route's function runs and caches its
answer per header value for ``AUTHORIZER_TTL_SECONDS``, so a flood of junk tokens invokes this small
function (outside the VPC, reserved concurrency of its own) instead of the REST function, and a
legitimate token costs one authorizer call per TTL. It verifies with the same TokenVerifier as the
handler, which still verifies every request itself (defence in depth, and what the local stack and the
tests without a gateway rely on): a token that expires within the cache TTL is refused there.
"""

from __future__ import annotations

from chalice.app import AuthResponse

from chalicelib import bootstrap, observability
from chalicelib.auth import bearer_token
from chalicelib.errors import ServiceUnavailable, Unauthorized

logger = observability.logger

# API Gateway's result cache for this authorizer (0 would disable it; the maximum is 3600).
AUTHORIZER_TTL_SECONDS = 300
# API Gateway answers 401 (its UNAUTHORIZED gateway response) when the authorizer fails with exactly
# this message; any other failure is a 500 AUTHORIZER_FAILURE (set to 503 in infra/template.yaml).
UNAUTHORIZED = "Unauthorized"


class GatewayUnauthorized(Exception):
    """Raised with API Gateway's magic message: the caller gets 401, nothing is cached."""

    def __init__(self) -> None:
        super().__init__(UNAUTHORIZED)


def authorize(authorization: str | None) -> AuthResponse:
    """Allow every route for a valid token (so one cached answer serves all of them), else 401.

    The allowed principal is the token's subject; the reason for a refusal goes to the log only."""
    try:
        principal = bootstrap.container().token_verifier.verify(bearer_token(authorization))
    except Unauthorized as exc:
        logger.info("authorizer refused a token", extra={"reason": exc.message})
        observability.count("AuthorizerRefused")
        raise GatewayUnauthorized() from None
    except ServiceUnavailable:
        # The identity provider's keys are unreachable: a failure (503 at the gateway), not a refusal.
        logger.exception("authorizer cannot verify tokens")
        raise
    return AuthResponse(routes=["*"], principal_id=principal.subject)
