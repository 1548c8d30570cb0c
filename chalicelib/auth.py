"""JWT verification for every REST route and the WebSocket $connect.

HS256 with a shared secret for local/dev; RS256 against a JWKS URL (Cognito-style user pools) for
production. The accepted algorithm list holds exactly the configured algorithm, which is what defeats
`alg: none` and HS/RS confusion (an HS256 token signed with the RSA public key as its secret).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chalicelib import lazy
from chalicelib.errors import ConfigurationError, MissingCredentials, ServiceUnavailable, Unauthorized
from chalicelib.settings import JwtAlgorithm, Settings

if TYPE_CHECKING:
    import jwt
else:  # pyjwt imports its crypto backend (cryptography) at import: first verification only (chalicelib/lazy.py)
    jwt = lazy.module("jwt")

_REQUIRED_CLAIMS = ["exp", "iss", "aud", "sub"]
# Bearer tokens longer than this are not JWTs we issue; refuse before parsing.
_MAX_TOKEN_LENGTH = 8192
# A warm container remembers the tokens it verified lately (a client sends the same token with every
# request; an RS256 signature check is most of a cached request's CPU). A remembered token is accepted
# until its own expiry (with the leeway, as pyjwt judges it) and for at most this long, so a key
# withdrawn from the JWKS stops being honoured within a minute, as a fresh container would.
VERIFIED_TOKEN_MAX_AGE_SECONDS = 60.0
VERIFIED_TOKEN_CACHE_SIZE = 256


@dataclass(frozen=True)
class Principal:
    subject: str
    claims: dict[str, Any]
    # Holds the operator role: decided once, at verification, from what the identity provider issued.
    is_operator: bool = False


def has_operator_role(claims: dict[str, Any], *, group: str, scope: str) -> bool:
    """Membership of the operator group (Cognito's ``cognito:groups`` list) or the operator OAuth scope
    (``scope``, space-separated). Only the identity provider sets these in a verified token; a
    free-form claim such as ``admin`` is not a role (any token issuer for the audience could add it)."""
    groups = claims.get("cognito:groups")
    if group and isinstance(groups, list) and group in groups:
        return True
    scopes = claims.get("scope")
    return bool(scope) and isinstance(scopes, str) and scope in scopes.split()


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header, or Unauthorized."""
    if not authorization:
        raise MissingCredentials("missing Authorization header; send 'Authorization: Bearer <token>'")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()


class TokenVerifier:
    def __init__(
        self,
        settings: Settings,
        jwks_client: jwt.PyJWKClient | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._verified_lock = threading.Lock()
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = settings.jwt_leeway_seconds
        self._operator_group = settings.operator_group
        self._operator_scope = settings.operator_scope
        self._secret = settings.effective_jwt_secret if self._algorithm is JwtAlgorithm.HS256 else None
        self._jwks = jwks_client
        if self._algorithm is JwtAlgorithm.RS256 and self._jwks is None:
            if settings.jwt_jwks_url is None:  # Settings validation already refuses this
                raise ConfigurationError("JWT_JWKS_URL is required when JWT_ALGORITHM=RS256")
            # Keys are cached per container; an unknown `kid` refetches (key rotation).
            self._jwks = jwt.PyJWKClient(settings.jwt_jwks_url, cache_keys=True, lifespan=3600, timeout=3)

    def verify(self, token: str) -> Principal:
        if len(token) > _MAX_TOKEN_LENGTH:
            raise Unauthorized("token is too long")
        now = self._clock()
        with self._verified_lock:
            remembered = self._verified.get(token)
            if remembered is not None:
                if now < remembered[1]:
                    self._verified.move_to_end(token)
                    return remembered[0]
                del self._verified[token]
        principal = self._verify(token)
        good_until = min(now + VERIFIED_TOKEN_MAX_AGE_SECONDS, float(principal.claims["exp"]) + self._leeway)
        with self._verified_lock:
            self._verified[token] = (principal, good_until)
            while len(self._verified) > VERIFIED_TOKEN_CACHE_SIZE:
                self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            key = self._verification_key(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[self._algorithm.value],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS, "verify_signature": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthorized("token is not valid yet (nbf/iat in the future)") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("token audience is not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("token issuer is not accepted") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token lacks the required claim {exc.claim!r}") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise Unauthorized(f"token algorithm is not accepted (expected {self._algorithm.value})") from exc
        except jwt.PyJWKClientConnectionError as exc:
            raise ServiceUnavailable(
                "cannot reach the identity provider's JWKS endpoint", retry_after_seconds=5
            ) from exc
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as exc:
            raise Unauthorized("token is invalid") from exc
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("token subject is empty")
        operator = has_operator_role(claims, group=self._operator_group, scope=self._operator_scope)
        return Principal(subject=subject, claims=claims, is_operator=operator)

    def _verification_key(self, token: str) -> Any:
        if self._algorithm is JwtAlgorithm.HS256:
            return self._secret
        if self._jwks is None:
            raise ConfigurationError("RS256 verification without a JWKS client")
        # The header's alg is checked again by decode(); refuse early so we never fetch keys for junk.
        header = jwt.get_unverified_header(token)
        if header.get("alg") != JwtAlgorithm.RS256.value:
            raise jwt.InvalidAlgorithmError("unexpected alg")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("token has no key id (kid)")
        try:
            # The key set itself first: whatever goes wrong there is the identity provider's fault
            # (down, an HTML error page, no keys), so the caller gets 503, not a misleading 401.
            self._jwks.get_signing_keys()
            return self._jwks.get_signing_key(kid).key
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError) as exc:
            raise _jwks_unusable() from exc
        except jwt.PyJWKClientError as exc:
            if not self._has_usable_key_set():
                raise _jwks_unusable() from exc
            raise Unauthorized("token was signed with an unknown key") from exc

    def _has_usable_key_set(self) -> bool:
        if self._jwks is None:
            return False
        try:
            return bool(self._jwks.get_signing_keys())
        except (jwt.PyJWTError, ValueError):
            return False


def _jwks_unusable() -> ServiceUnavailable:
    return ServiceUnavailable(
        "cannot get usable keys from the identity provider's JWKS endpoint", retry_after_seconds=5
    )
