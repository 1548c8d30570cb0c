"""What every REST invocation goes through: auth, logging context, metrics, the standard error body.

app.py registers `http_middleware` once and wraps each view in `api_view`, so no route can forget
authentication or leak a stack trace. Chalice turns exceptions raised inside a view into its own 500
before middleware sees them, hence the per-view wrapper; Chalice's own error bodies (405, 415) are
rewritten here into the standard shape.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, ParamSpec

from chalice.app import Request, Response
from pydantic import BaseModel

from chalicelib import bootstrap, observability
from chalicelib.auth import bearer_token
from chalicelib.errors import AppError, ConfigurationError, MissingCredentials, http_status_for
from chalicelib.models.errors import ErrorBody, ErrorDetail

logger = observability.logger
tracer = observability.tracer

# Routes reachable without a token (the OpenAPI document arrives with the providers issue).
PUBLIC_RESOURCES: frozenset[str] = frozenset()

SECURITY_HEADERS = {
    "Content-Type": "application/json",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

_P = ParamSpec("_P")


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
    message = error.message
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


def remaining_deadline(lambda_context: Any) -> float | None:
    """The invocation's deadline as a monotonic time, from the Lambda context."""
    remaining = getattr(lambda_context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    return time.monotonic() + float(remaining()) / 1000.0


def http_middleware(request: Request, get_response: Callable[[Request], Response]) -> Response:
    request_id = request_id_of(request)
    resource = str(request.context.get("resourcePath", request.path))
    logger.append_keys(request_id=request_id, method=request.method, resource=resource)
    started = time.monotonic()
    try:
        response = _authenticate_and_call(request, resource, request_id, get_response)
    except Exception:  # the last line of defence: nothing leaves as a stack trace
        logger.exception("unhandled error in middleware")
        response = internal_error_response(request_id)
    response = _standardize_framework_error(response, request_id)
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
    try:
        if resource not in PUBLIC_RESOURCES:
            verifier = bootstrap.container().token_verifier
            principal = verifier.verify(bearer_token(request.headers.get("authorization")))
            request.context["authorizer"] = {"principal": principal}
            logger.append_keys(user=principal.subject)
    except AppError as exc:
        return error_response(exc, request_id)
    with tracer.provider.in_subsegment(f"## {request.method} {resource}"):
        return get_response(request)


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
