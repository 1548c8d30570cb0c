"""What every REST invocation goes through: auth, logging context, metrics, the standard error body.

app.py registers `http_middleware` once and wraps each view in `api_view`, so no route can forget
authentication or leak a stack trace. Chalice turns exceptions raised inside a view into its own 500
before middleware sees them, hence the per-view wrapper; Chalice's own error bodies (405, 415) are
rewritten here into the standard shape.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
import uuid
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from chalice.app import Request, Response
from pydantic import BaseModel, ValidationError

from chalicelib import bootstrap, dashboard_api, observability
from chalicelib.auth import Principal, bearer_token
from chalicelib.errors import (
    AppError,
    ConfigurationError,
    Forbidden,
    MissingCredentials,
    RateLimited,
    Unauthorized,
    ValidationFailed,
    client_message,
    http_status_for,
)
from chalicelib.models.errors import ErrorBody, ErrorDetail
from chalicelib.ports import DeferredRateLimit
from chalicelib.services.provider_chain import metered_upstream_calls

logger = observability.logger

# Routes reachable without a token: the API descriptions, and the dashboard page, its files and its
# configuration (chalicelib/dashboard_api.py; the page needs them before it has a token).
OPENAPI_PATH = "/api/v1/openapi.json"
ASYNCAPI_PATH = "/api/v1/asyncapi.json"
DASHBOARD_RESOURCES = (dashboard_api.PAGE_PATH, dashboard_api.ASSET_PATH, dashboard_api.CONFIG_PATH)
PUBLIC_RESOURCES: frozenset[str] = frozenset({OPENAPI_PATH, ASYNCAPI_PATH, *DASHBOARD_RESOURCES})

CORS_ALLOWED_HEADERS = "Authorization,Content-Type"
CORS_EXPOSED_HEADERS = "Retry-After,X-RateLimit-Limit,X-RateLimit-Remaining,X-RateLimit-Reset"
CORS_MAX_AGE_SECONDS = "600"

SECURITY_HEADERS = {
    "Content-Type": "application/json",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

_P = ParamSpec("_P")
_M = TypeVar("_M", bound=BaseModel)


def _validation_message(exc: ValidationError, what: str) -> str:
    problems = []
    for err in exc.errors()[:5]:
        location = ".".join(str(part) for part in err.get("loc", ())) or what
        problems.append(f"{location}: {str(err.get('msg', 'invalid')).removeprefix('Value error, ')}")
    return f"invalid {what}: " + "; ".join(problems)


def parse_query(model: type[_M], request: Request | None) -> _M:
    """The query string as ``model``; unknown or repeated parameters and bad values are a 400."""
    query = request.query_params if request is not None else None
    params: dict[str, str] = {}
    if query is not None:
        repeated = sorted(k for k in query if len(query.getlist(k)) > 1)
        if repeated:
            raise ValidationFailed(f"query parameter given more than once: {', '.join(repeated)}")
        params = {k: query[k] for k in query}
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise ValidationFailed(_validation_message(exc, "query parameters")) from None


def parse_body(model: type[_M], request: Request | None) -> _M:
    """The JSON body as ``model``: malformed JSON, a non-object or bad fields are a 400."""
    raw = request.raw_body if request is not None else b""
    if not raw:
        raise ValidationFailed("a JSON body is required")
    try:
        document = json.loads(raw)
    except ValueError:
        raise ValidationFailed("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise ValidationFailed("the body must be a JSON object")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise ValidationFailed(_validation_message(exc, "body")) from None


def request_id_of(request: Request | None) -> str:
    """API Gateway's request id; one is minted (and kept on the request) when the event has none."""
    if request is None:
        return "unknown"
    context = request.context
    if not context.get("requestId"):
        context["requestId"] = f"local-{uuid.uuid4()}"
    return str(context["requestId"])


def json_response(body: BaseModel, *, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=body.model_dump_json(by_alias=True),
        status_code=status_code,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def error_response(error: AppError, request_id: str) -> Response:
    status = http_status_for(error)
    message = client_message(error)
    if isinstance(error, Unauthorized):
        logger.info("request refused: unauthenticated", extra={"reason": error.message})
    if isinstance(error, ConfigurationError):
        # Operators get the variable's name in the log; clients get a pointer to it, not our config.
        logger.error("configuration error", extra={"detail": error.message})
        message = "the service is misconfigured; the operators have been told (quote the request id)"
    headers: dict[str, str] = {}
    if error.retry_after_seconds is not None:
        headers["Retry-After"] = str(error.retry_after_seconds)
    if isinstance(error, MissingCredentials):
        headers["WWW-Authenticate"] = 'Bearer realm="market-data"'
    elif status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="market-data", error="invalid_token"'
    body = ErrorBody(error=ErrorDetail(code=error.code, message=message, request_id=request_id))
    return json_response(body, status_code=status, headers=headers)


def internal_error_response(request_id: str) -> Response:
    body = ErrorBody(
        error=ErrorDetail(
            code="internal_error",
            message="an unexpected error occurred; quote the request id when reporting it",
            request_id=request_id,
        )
    )
    return json_response(body, status_code=500)


def api_view(
    current_request: Callable[[], Request | None],
) -> Callable[[Callable[_P, Response]], Callable[_P, Response]]:
    """Wrap a view so an AppError becomes the standard error body and anything else a logged 500."""

    def decorate(view: Callable[_P, Response]) -> Callable[_P, Response]:
        @functools.wraps(view)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> Response:
            try:
                return view(*args, **kwargs)
            except AppError as exc:
                return error_response(exc, request_id_of(current_request()))
            except Exception:
                logger.exception("unhandled error in view")
                observability.count("UnhandledError")
                return internal_error_response(request_id_of(current_request()))

        return wrapper

    return decorate


def principal_of(request: Request | None) -> Principal | None:
    """The verified caller the middleware stored on the request (None on public routes)."""
    authorizer = (request.context.get("authorizer") or {}) if request is not None else {}
    principal = authorizer.get("principal")
    return principal if isinstance(principal, Principal) else None


def require_operator(request: Request | None) -> Principal:
    """Operator endpoints: the caller must hold the operator role its identity provider issued."""
    principal = principal_of(request)
    if principal is None or not principal.is_operator:
        logger.info("operator endpoint refused", extra={"user": principal.subject if principal else None})
        raise Forbidden("this endpoint is for operators only")
    return principal


def decide_rate_limit_now(request: Request | None) -> None:
    """Before a handler whose first I/O is not the cache read (RouteDoc.reads_cache_first): settle the
    caller's rate-limit hit on its own, so nothing the handler does happens over a spent budget (the
    middleware turns the refusal into the standard 429 with its headers)."""
    pending = ((request.context.get("authorizer") or {}) if request is not None else {}).get("rate_limit")
    if pending is not None and not pending.decision().allowed:
        raise RateLimited("the rate limit is spent")


def http_middleware(request: Request, get_response: Callable[[Request], Response]) -> Response:
    request_id = request_id_of(request)
    resource = str(request.context.get("resourcePath", request.path))
    logger.append_keys(request_id=request_id, method=request.method, resource=resource)
    started = time.monotonic()
    try:
        if request.method == "OPTIONS":
            response = _preflight(request)
        else:
            response = _authenticate_and_call(request, resource, request_id, get_response)
    except Exception:  # the last line of defence: nothing leaves as a stack trace
        logger.exception("unhandled error in middleware")
        response = internal_error_response(request_id)
    response = _standardize_framework_error(response, request_id)
    _add_cors_headers(request, response)
    elapsed_ms = (time.monotonic() - started) * 1000
    dimensions = {"route": f"{request.method} {resource}"}
    observability.count("Requests", dimensions=dimensions)
    observability.milliseconds("Latency", elapsed_ms, dimensions=dimensions)
    if response.status_code >= 500:
        observability.count("ServerErrors", dimensions=dimensions)
    logger.info("request", extra={"status": response.status_code, "latency_ms": round(elapsed_ms, 1)})
    logger.remove_keys(["request_id", "method", "resource", "user"])
    return response


def _authenticate_and_call(
    request: Request, resource: str, request_id: str, get_response: Callable[[Request], Response]
) -> Response:
    subject: str | None = None
    pending: DeferredRateLimit | None = None
    try:
        if resource not in PUBLIC_RESOURCES:
            container = bootstrap.container()
            principal = container.token_verifier.verify(bearer_token(request.headers.get("authorization")))
            request.context["authorizer"] = {"principal": principal}
            logger.append_keys(user=principal.subject)
            subject = principal.subject
            # The per-user budget is decided in the request's first Redis round trip: a cached read
            # carries it (one round trip per cached request), and nothing upstream happens before it
            # is known (chalicelib/adapters/redis_quotas.py PendingHit).
            pending = container.quotas.deferred_hit(principal.subject, container.settings.user_rate_limit_per_minute)
            request.context["authorizer"]["rate_limit"] = pending
    except AppError as exc:
        return error_response(exc, request_id)
    with (
        pending.riding() if pending is not None else contextlib.nullcontext(),
        observability.subsegment(f"## {request.method} {resource}"),
        metered_upstream_calls() as meter,
    ):
        response = get_response(request)
    if pending is None:
        return response
    try:
        decision = pending.decision()
    except AppError as exc:
        return error_response(exc, request_id)
    limit_headers = {
        "X-RateLimit-Limit": str(decision.limit),
        "X-RateLimit-Remaining": str(decision.remaining),
        "X-RateLimit-Reset": str(decision.reset_seconds),
    }
    if not decision.allowed:
        # Whatever the handler answered (it stopped at its first Redis round trip), the answer is 429.
        observability.count("UserRateLimited")
        error = RateLimited(
            f"more than {decision.limit} requests in a minute; retry in {decision.reset_seconds} s",
            retry_after_seconds=decision.reset_seconds,
        )
        response = error_response(error, request_id)
        response.headers.update(limit_headers)
        return response
    if subject is not None and meter.calls:
        limit_headers = _charge_upstream_calls(subject, meter.calls, limit_headers)
    response.headers.update(limit_headers)
    return response


def _charge_upstream_calls(subject: str, calls: int, limit_headers: dict[str, str]) -> dict[str, str]:
    """The per-user budget is weighted: each provider call the request caused costs
    USER_UPSTREAM_CALL_COST more units, so cache misses use it up far sooner than hits (the vendors'
    quotas are shared by every user; the cache is what keeps them whole)."""
    container = bootstrap.container()
    units = calls * container.settings.user_upstream_call_cost
    if units <= 0:
        return limit_headers
    after = container.quotas.hit(subject, container.settings.user_rate_limit_per_minute, units=units)
    return {**limit_headers, "X-RateLimit-Remaining": str(after.remaining)}


def _allowed_origin(request: Request) -> str | None:
    origin = (request.headers.get("origin") or "").rstrip("/")
    if not origin:
        return None
    try:
        allowed = bootstrap.container().settings.cors_allowed_origins
    except AppError:
        return None
    return origin if origin in allowed else None


def _preflight(request: Request) -> Response:
    """CORS preflight: answered without a token (browsers never send one on OPTIONS)."""
    headers: dict[str, str | list[str]] = {"Cache-Control": "no-store", "Vary": "Origin"}
    if _allowed_origin(request) is not None:
        headers.update(
            {
                "Access-Control-Allow-Methods": "GET,POST,OPTIONS",
                "Access-Control-Allow-Headers": CORS_ALLOWED_HEADERS,
                "Access-Control-Max-Age": CORS_MAX_AGE_SECONDS,
            }
        )
    return Response(body="", status_code=204, headers=headers)


def _add_cors_headers(request: Request, response: Response) -> None:
    """Only the configured dashboard origins may read responses cross-origin; never '*'."""
    response.headers["Vary"] = "Origin"
    origin = _allowed_origin(request)
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS


def _standardize_framework_error(response: Response, request_id: str) -> Response:
    """Chalice answers some errors itself ({"Code": ..., "Message": ...}); give them our shape."""
    if response.status_code < 400:
        return response
    body = response.body
    if isinstance(body, str | bytes):
        try:
            body = json.loads(body)
        except ValueError:
            return response
    if not (isinstance(body, dict) and "Code" in body and "Message" in body):
        return response
    code = {405: "method_not_allowed", 415: "unsupported_media_type"}.get(response.status_code, "error")
    if response.status_code >= 500:
        code = "internal_error"
    standard = ErrorBody(error=ErrorDetail(code=code, message=str(body["Message"]), request_id=request_id))
    headers = {k: str(v) for k, v in response.headers.items() if k.lower() != "content-type"}
    return json_response(standard, status_code=response.status_code, headers=headers)
