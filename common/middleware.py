"""ASGI middleware: request id, caller, access log, metrics, last-resort 500.

Written as plain ASGI (not `BaseHTTPMiddleware`) so that streamed responses
pass through untouched and the request id stays in the context of the
handler that runs them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.caller import InvalidCaller, caller_from_headers, caller_var
from common.errors import BadRequest, error_response, internal_error_response
from common.metrics import ServiceMetrics
from common.request_context import (
    MODEL_VERSION_HEADER,
    MODEL_VERSION_PATTERN,
    REQUEST_ID_HEADER,
    client_request_id_var,
    model_version_var,
    new_request_id,
    request_id_var,
    sanitize_request_id,
    valid_model_version,
)

__all__ = ["RequestContextMiddleware"]

logger = logging.getLogger("common.access")

# Probes are scraped every few seconds; their access lines would drown the log. Only their
# failures are logged, and "not ready yet" (/readyz 503) is a state, not a failure: the
# launcher polls it several times a second while a model loads.
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _worth_logging(path: str, status: int) -> bool:
    if path not in _QUIET_PATHS:
        return True
    return status >= 400 and not (path == "/readyz" and status == 503)


def _route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    # Unmatched paths are one label, so a scanner cannot blow up the series count.
    return str(path) if path else "unmatched"


def _model_version(headers: dict[str, str]) -> str | None:
    """The core-model version a request names (`X-Model-Version`); None when none."""
    version = headers.get(MODEL_VERSION_HEADER.lower())
    if version is not None and not valid_model_version(version):
        raise InvalidCaller(f"{MODEL_VERSION_HEADER} must match {MODEL_VERSION_PATTERN}")
    return version


class RequestContextMiddleware:
    """Sets the request id and the caller of each request, then logs and counts it.

    `edge=True` is the public entry (the gateway): it generates every request
    id itself (a client's `X-Request-ID` is kept as `client_request_id`) and
    never takes a caller from headers; its authentication sets the caller.
    Internal services keep the request id they are given and take the caller
    and the core-model version (`X-Model-Version`) from the headers.
    """

    def __init__(
        self, app: ASGIApp, service: str, metrics: ServiceMetrics, edge: bool = False
    ) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics
        self.edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []
        }
        sent_id = headers.get(REQUEST_ID_HEADER.lower())
        client_token = None
        if self.edge:
            request_id = new_request_id()
            if sent_id:
                client_token = client_request_id_var.set(sanitize_request_id(sent_id))
        else:
            request_id = sanitize_request_id(sent_id)
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        caller_token = None
        version_token = None
        if not self.edge:
            try:
                caller_token = caller_var.set(caller_from_headers(headers))
                version_token = model_version_var.set(_model_version(headers))
            except InvalidCaller as exc:
                detail = BadRequest(str(exc), code="invalid_caller").detail(
                    self.service, request_id
                )
                response = error_response(detail, 400)
                response.headers[REQUEST_ID_HEADER] = request_id
                await response(scope, receive, send)
                request_id_var.reset(token)
                return
        method = scope["method"]
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        self.metrics.in_flight.labels(service=self.service).inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled exception", extra={"path": scope.get("path")})
            if response_started:
                raise
            status = 500
            await internal_error_response(self.service, request_id)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.in_flight.labels(service=self.service).dec()
            route = _route_template(scope)
            self.metrics.observe(method, route, status, elapsed)
            path = scope.get("path", "")
            if _worth_logging(path, status):
                logger.info(
                    "%s %s %d",
                    method,
                    path,
                    status,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 2)},
                )
            request_id_var.reset(token)
            if caller_token is not None:
                caller_var.reset(caller_token)
            if version_token is not None:
                model_version_var.reset(version_token)
            if client_token is not None:
                client_request_id_var.reset(client_token)
