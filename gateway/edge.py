"""The gateway's edge: body size limit, rate-limit headers, `x-gateway-overhead-ms`.

Plain ASGI, placed inside the shared request-context middleware so that a
413 carries the request id. The overhead is the time from the request's
arrival to the response's start minus the time spent waiting on upstreams
(`upstream_timer`), i.e. what the gateway itself costs a caller.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.contracts.errors import ErrorDetail
from common.errors import PayloadTooLarge, error_response
from common.request_context import current_request_id

__all__ = ["OVERHEAD_HEADER", "EdgeMiddleware", "upstream_timer"]

OVERHEAD_HEADER = "x-gateway-overhead-ms"

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

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
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
