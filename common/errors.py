"""Service errors and the handlers that render them in the one error shape.

Exception tree::

    ServiceError                      (any status; rendered as-is)
    ├── BadRequest                    400 invalid_request_error
    ├── Unauthorized                  401 authentication_error
    ├── Forbidden                     403 permission_error
    ├── NotFound                      404 not_found_error
    ├── Conflict                      409 conflict_error
    ├── PreconditionFailed            412 precondition_failed
    ├── PayloadTooLarge               413 invalid_request_error
    ├── RateLimited                   429 rate_limit_error
    ├── UpstreamError                 an upstream's own error, status and origin kept
    │   └── BadUpstreamResponse       502 upstream_error (an answer outside its contract)
    ├── UpstreamUnavailable           503 upstream_unavailable
    │   └── CircuitOpen               503 upstream_unavailable (failing fast)
    ├── ServiceUnavailable            503 service_unavailable
    │   └── Overloaded                503 service_unavailable, code overloaded (load shed)
    └── UpstreamTimeout               504 upstream_timeout

    HTTPException (FastAPI's)
    └── MalformedBody                 400 invalid_request_error (raised as a body is read)

Every error leaves a service as
`{"error": {"message", "type", "param", "code", "service", "request_id"}}`
with the HTTP status on the response (docs/api.md).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from common.contracts.errors import ErrorDetail, ErrorResponse
from common.request_context import REQUEST_ID_HEADER, current_request_id

__all__ = [
    "OVERLOADED",
    "BadRequest",
    "BadUpstreamResponse",
    "CircuitOpen",
    "Conflict",
    "Forbidden",
    "MalformedBody",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PreconditionFailed",
    "RateLimited",
    "ServiceError",
    "ServiceUnavailable",
    "Unauthorized",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "error_response",
    "install_error_handlers",
    "internal_error_response",
]

logger = logging.getLogger("common.errors")

# The code of a request shed because the service has more work than it can start in time:
# callers pass it on (with its Retry-After) and do not count it as a failure of the service.
OVERLOADED = "overloaded"

INTERNAL_ERROR_MESSAGE = "Internal server error. Retry later; report the request id if it persists."


class ServiceError(Exception):
    """An error a service means to report to its caller."""

    status_code: int = 500
    error_type: str = "server_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}
        if status_code is not None:
            self.status_code = status_code
        if error_type is not None:
            self.error_type = error_type

    def detail(self, service: str, request_id: str | None) -> ErrorDetail:
        return ErrorDetail(
            message=self.message,
            type=self.error_type,
            param=self.param,
            code=self.code,
            service=service,
            request_id=request_id,
        )


class BadRequest(ServiceError):
    status_code = 400
    error_type = "invalid_request_error"


class MalformedBody(HTTPException):
    """A request body refused while the app reads it (common/input_guard.py).

    An `HTTPException`, not a `ServiceError`: FastAPI's body parsing lets
    HTTP exceptions through unchanged, where it would replace any other error
    with a generic "error parsing the body". Rendered with its `code`.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(status_code=400, detail=message)
        self.code = code


class Unauthorized(ServiceError):
    status_code = 401
    error_type = "authentication_error"


class Forbidden(ServiceError):
    status_code = 403
    error_type = "permission_error"


class NotFound(ServiceError):
    status_code = 404
    error_type = "not_found_error"


class Conflict(ServiceError):
    status_code = 409
    error_type = "conflict_error"


class PreconditionFailed(ServiceError):
    status_code = 412
    error_type = "precondition_failed"


class PayloadTooLarge(ServiceError):
    status_code = 413
    error_type = "invalid_request_error"


class RateLimited(ServiceError):
    status_code = 429
    error_type = "rate_limit_error"


class ServiceUnavailable(ServiceError):
    status_code = 503
    error_type = "service_unavailable"


class Overloaded(ServiceUnavailable):
    """Too much work waits: the request was shed, with an estimate of when to retry.

    `Retry-After` is `retry_after_s` rounded up to whole seconds, at least 1.
    """

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        wait = max(1, math.ceil(retry_after_s))
        super().__init__(message, code=OVERLOADED, headers={"Retry-After": str(wait)})


class UpstreamUnavailable(ServiceError):
    status_code = 503
    error_type = "upstream_unavailable"


class CircuitOpen(UpstreamUnavailable):
    """The upstream's circuit breaker is open: the call was not attempted."""


class UpstreamTimeout(ServiceError):
    status_code = 504
    error_type = "upstream_timeout"


class UpstreamError(ServiceError):
    """An error an upstream service answered with, re-raised unchanged.

    The status, type, code and param are the upstream's; `origin` names the
    service where the error arose, so the caller sees where it came from;
    `headers` keeps what the caller must pass on (the upstream's `Retry-After`).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        error_type: str,
        origin: str,
        param: str | None = None,
        code: str | None = None,
        request_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            message,
            param=param,
            code=code,
            status_code=status_code,
            error_type=error_type,
            headers=headers,
        )
        self.origin = origin
        self.request_id = request_id

    def detail(self, service: str, request_id: str | None) -> ErrorDetail:
        return super().detail(self.origin, self.request_id or request_id)


class BadUpstreamResponse(UpstreamError):
    """An upstream answered 2xx with something that is not its contract: 502, its origin."""

    def __init__(self, upstream: str, what: str) -> None:
        super().__init__(
            f"{upstream} {what}".splitlines()[0],
            status_code=502,
            error_type="upstream_error",
            origin=upstream,
            code="bad_upstream_response",
        )

    @classmethod
    def from_validation(cls, upstream: str, exc: ValidationError) -> BadUpstreamResponse:
        """The first field of `exc` that did not match the contract, named."""
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        return cls(upstream, f"answered outside its contract ({where}: {first['msg']}).")


_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    412: "precondition_failed",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type_for_status(status_code: int) -> str:
    """Return the error `type` used for an HTTP status without a richer one."""
    if status_code in _TYPE_BY_STATUS:
        return _TYPE_BY_STATUS[status_code]
    return "invalid_request_error" if status_code < 500 else "server_error"


def error_response(
    detail: ErrorDetail, status_code: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Render `detail` as the shared error body with its status."""
    response_headers = dict(headers or {})
    if detail.request_id:
        response_headers[REQUEST_ID_HEADER] = detail.request_id
    return JSONResponse(
        ErrorResponse(error=detail).model_dump(),
        status_code=status_code,
        headers=response_headers,
    )


def internal_error_response(service: str, request_id: str | None) -> JSONResponse:
    """The 500 answer to an unexpected exception: no internals leak out."""
    detail = ErrorDetail(
        message=INTERNAL_ERROR_MESSAGE,
        type="server_error",
        code="internal_error",
        service=service,
        request_id=request_id,
    )
    return error_response(detail, 500)


def _validation_param(loc: tuple[Any, ...]) -> str | None:
    # ("body", "messages", 0, "role") -> "messages.0.role"; the source is implied.
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in {"body", "query", "path"} else []
    if not parts and loc:
        parts = [str(p) for p in loc]
    return ".".join(parts) or None


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Invalid request.", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = first.get("ctx", {}).get("error", "could not parse")
        return f"Malformed JSON body: {reason}.", None
    loc = tuple(first.get("loc", ()))
    param = _validation_param(loc)
    message = str(first.get("msg", "Invalid value"))
    if param:
        message = f"Invalid value for '{param}': {message}."
    if len(errors) > 1:
        message += f" ({len(errors) - 1} more error(s) in this request.)"
    return message, param


def install_error_handlers(app: FastAPI, service: str) -> None:
    """Make every error of `app` leave in the shared shape (docs/api.md).

    Service errors keep their status; HTTP exceptions (unknown route: 404,
    wrong method: 405) get a typed body; request validation answers 400 with
    the failing field in `param` (a malformed JSON body too); a client gone
    mid-body and input nested past Python's recursion limit answer 400;
    anything else answers a generic 500 and logs the stack trace.
    """

    async def on_service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        log = logger.warning if exc.status_code >= 500 else logger.info
        log(
            "request failed",
            extra={"status": exc.status_code, "error_type": exc.error_type, "error": exc.message},
        )
        detail = exc.detail(service, current_request_id())
        return error_response(detail, exc.status_code, exc.headers)

    async def on_http_exception(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 404 and exc.detail == "Not Found":
            message = f"Unknown route: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"Method {request.method} not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        detail = ErrorDetail(
            message=message,
            type=error_type_for_status(exc.status_code),
            code=exc.code if isinstance(exc, MalformedBody) else None,
            service=service,
            request_id=current_request_id(),
        )
        return error_response(detail, exc.status_code, dict(exc.headers or {}))

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message, param = _validation_message(exc)
        detail = ErrorDetail(
            message=message,
            type="invalid_request_error",
            param=param,
            code="invalid_json" if message.startswith("Malformed JSON") else "invalid_value",
            service=service,
            request_id=current_request_id(),
        )
        return error_response(detail, 400)

    async def on_client_disconnect(request: Request, exc: Exception) -> JSONResponse:
        # The client left (or was cut off by the body deadline) mid-body: nobody reads this.
        logger.info("client disconnected before its request body was read")
        error = BadRequest(
            "The client disconnected before sending its whole body.", code="client_disconnected"
        )
        return error_response(error.detail(service, current_request_id()), 400)

    async def on_recursion_error(request: Request, exc: Exception) -> JSONResponse:
        # Only nested input recurses without bound here (JSON outside the guarded types).
        logger.info("input nested too deeply", exc_info=exc)
        error = BadRequest("The request's input is nested too deeply.", code="input_too_deep")
        return error_response(error.detail(service, current_request_id()), 400)

    async def on_unhandled(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled exception", exc_info=exc)
        return internal_error_response(service, current_request_id())

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(StarletteHTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(ClientDisconnect, on_client_disconnect)
    app.add_exception_handler(RecursionError, on_recursion_error)
    app.add_exception_handler(Exception, on_unhandled)
