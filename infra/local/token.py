"""Print a dev JWT for the local stage: `make -s token`.

Signed with the same settings the service validates against (JWT_SECRET or the public local
default, JWT_ISSUER, JWT_AUDIENCE), so it works against `make run` unchanged.
"""

from __future__ import annotations

import argparse
import time

import jwt

from chalicelib.settings import JwtAlgorithm, load_settings


def issue_dev_token(subject: str = "dev-user", ttl_seconds: int = 12 * 3600, *, operator: bool = False) -> str:
    settings = load_settings()
    if settings.jwt_algorithm is not JwtAlgorithm.HS256:
        raise SystemExit("make token signs HS256 dev tokens only; with RS256 get a token from your identity provider")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": subject,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl_seconds,
    }
    if operator:
        # What a Cognito user pool puts in the token of a member of the operator group (OPERATOR_GROUP),
        # or, with the group disabled, the operator scope an OAuth client credentials grant carries.
        if settings.operator_group:
            claims["cognito:groups"] = [settings.operator_group]
        elif settings.operator_scope:
            claims["scope"] = settings.operator_scope
        else:
            raise SystemExit("OPERATOR_GROUP and OPERATOR_SCOPE are both empty: no token can be an operator's")
    return jwt.encode(claims, settings.effective_jwt_secret, algorithm="HS256")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sub", default="dev-user", help="the token's subject (user id)")
    parser.add_argument("--ttl", type=int, default=12 * 3600, help="lifetime in seconds")
    parser.add_argument(
        "--operator", action="store_true", help="an operator's token (the OPERATOR_GROUP group, cognito:groups)"
    )
    args = parser.parse_args()
    print(issue_dev_token(args.sub, args.ttl, operator=args.operator))


if __name__ == "__main__":
    main()
