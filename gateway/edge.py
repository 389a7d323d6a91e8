"""The gateway's edge: body size limit, rate-limit headers, `x-gateway-overhead-ms`, audit.

Plain ASGI, placed inside the shared request-context middleware so that a
413 carries the request id. The overhead is the time from the request's
arrival to the response's start minus the time spent waiting on upstreams
(`upstream_timer`), i.e. what the gateway itself costs a caller.

Every `/v1` call made with a verified key (`common.caller.caller_var` set by
`gateway.security`) leaves one line on the `gateway.audit` logger as its
response starts: method, route template, status, time to the response's
start, key id, tenant and role (the log formatter adds the request id and
the client's own request id).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.caller import caller_var
from common.contracts.errors import ErrorDetail
from common.errors import PayloadTooLarge, error_response
from common.request_context import current_request_id

__all__ = ["OVERHEAD_HEADER", "EdgeMiddleware", "upstream_timer"]

OVERHEAD_HEADER = "x-gateway-overhead-ms"

audit_logger = logging.getLogger("gateway.audit")
# The audit trail is kept whatever GATEWAY_LOG_LEVEL says (WARNING silences access lines only).
audit_logger.setLevel(logging.INFO)

# Seconds spent waiting on upstreams by the current request (a one-item list so
# that tasks of the request add to the same total).
_upstream_wait: ContextVar[list[float] | None] = ContextVar("gateway_upstream_wait", default=None)


@asynccontextmanager
async def upstream_timer() -> AsyncIterator[None]:
    """Count the time inside the block as upstream time, not gateway overhead."""
    started = time.perf_counter()
    try:
        yield
    finally:
        total = _upstream_wait.get()
        if total is not None:
            total[0] += time.perf_counter() - started


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"Request body larger than {limit} bytes.", param=None, code="body_too_large"
    )


class EdgeMiddleware:
    def __init__(self, app: ASGIApp, service: str, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        waited = [0.0]
        token = _upstream_wait.set(waited)
        limit = self.max_body_bytes
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            exc = _too_large(limit)
            detail: ErrorDetail = exc.detail(self.service, current_request_id())
            await error_response(detail, exc.status_code)(scope, receive, send)
            _upstream_wait.reset(token)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the route's body read: rendered as a 413.
                    raise _too_large(limit)
            return message

        audited = False

        async def send_with_headers(message: Message) -> None:
            nonlocal audited
            if message["type"] == "http.response.start":
                # Written before the caller sees the answer: a client that leaves mid-answer
                # (or reads the log right after it) cannot outrun its audit line.
                audited = True
                _audit(scope, message["status"], time.perf_counter() - started)
                headers = MutableHeaders(scope=message)
                overhead_ms = (time.perf_counter() - started - waited[0]) * 1000
                headers[OVERHEAD_HEADER] = f"{max(0.0, overhead_ms):.2f}"
                state = scope.get("state") or {}
                for name, value in (state.get("ratelimit_headers") or {}).items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        finally:
            _upstream_wait.reset(token)
            if not audited:  # failed before any response: the shared middleware answers 500
                _audit(scope, 500, time.perf_counter() - started)


def _audit(scope: Scope, status: int, elapsed_s: float) -> None:
    # Set by the key check in this request's task: None for calls made without a valid key.
    caller = caller_var.get()
    if caller is None or not str(scope.get("path", "")).startswith("/v1/"):
        return
    route = getattr(scope.get("route"), "path", None) or "unmatched"
    audit_logger.info(
        "%s %s %d key=%s tenant=%s",
        scope["method"],
        route,
        status,
        caller.key_id,
        caller.tenant,
        extra={
            "method": scope["method"],
            "route": route,
            "status": status,
            "response_start_ms": round(elapsed_s * 1000, 2),
            "key_id": caller.key_id,
            "tenant": caller.tenant,
            "role": caller.role,
        },
    )
