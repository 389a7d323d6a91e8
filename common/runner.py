"""`python -m <service>`: validate settings, configure logging, serve with uvicorn.

Every service runs on uvicorn with its h11 protocol, extended here with the
limits a server facing untrusted clients needs (settings `http_*`):

- request line + headers larger than `http_max_header_bytes`: 431 and close
  (h11's `max_incomplete_event_size`, enforced while the head is buffered,
  so a 16 MB header costs at most that much memory);
- more than `http_max_headers` header fields: 431 and close;
- headers not complete `http_header_timeout_s` after the connection opened
  (or after the previous response on a keep-alive connection): 408 and close,
  or a plain close when nothing was sent at all (slowloris);
- a body not complete `http_body_timeout_s` after its headers: 408 and close
  (a trickling body);
- an idle keep-alive connection closes after `http_keepalive_timeout_s`;
- beyond `http_max_concurrency` connections or requests in flight: 503.
Protocol errors answer in the shared error shape (JSON), like the services.

Why this and not another server: uvicorn offers the size limit (h11 only),
the keep-alive timeout and `limit_concurrency`, but no header-read or body
timeout and no header-count limit (its maintainers declined a count limit);
its default httptools parser has no header size limit at all. Hypercorn has
`h11_max_incomplete_size` and a per-read `read_timeout`, which a client that
sends one byte every few seconds never trips, and no body deadline. Granian
(hyper) has a header-read timeout and a buffer cap but no body timeout, runs
the app under its own Rust runtime (another disconnect and streaming
behaviour for every service to re-verify) and needs a native wheel. Adding
two deadlines and a count to uvicorn's h11 protocol is about a hundred lines
here, tested in tests/unit/common/test_runner_limits.py. The cost is h11's
pure-Python parsing instead of httptools: tens of microseconds a request,
nothing next to a model call.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import h11
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from common.heap import fix_mmap_threshold
from common.log import configure_logging
from common.settings import ServiceSettings

__all__ = ["ConnectionLimits", "LimitedH11Protocol", "limited_protocol", "serve"]

S = TypeVar("S", bound=ServiceSettings)

_ERROR_TYPES = {400: "invalid_request_error", 408: "timeout_error", 431: "invalid_request_error"}
_ERROR_CODES = {400: "invalid_http", 408: "request_timeout", 431: "headers_too_large"}


@dataclass(frozen=True)
class ConnectionLimits:
    """What one client connection may cost (see the module docstring)."""

    service: str
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ConnectionLimits:
        return cls(
            service=settings.service_name,
            max_header_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
        )


class _LimitedConnection(h11.Connection):
    """h11's server connection that also counts header fields and keeps the error status."""

    def __init__(self, max_header_bytes: int, max_headers: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self.max_header_bytes = max_header_bytes
        self.max_headers = max_headers
        self.error_status = 400

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as exc:
            self.error_status = exc.error_status_hint
            raise
        if isinstance(event, h11.Request):
            # h11 checks the size only while the head is incomplete: a whole head that
            # arrived in one read is measured here.
            size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
            if len(event.headers) > self.max_headers or size > self.max_header_bytes:
                self.error_status = 431
                raise h11.RemoteProtocolError("request head too large", error_status_hint=431)
        return event


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header-count limit and header and body deadlines.

    One deadline runs at a time: the header deadline while the client owes
    a request head (from the connection's start, or from the previous
    response), the body deadline while it owes a body.
    """

    limits: ClassVar[ConnectionLimits]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.conn: _LimitedConnection = _LimitedConnection(
            self.limits.max_header_bytes, self.limits.max_headers
        )
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: object = None  # the h11 state the deadline is for

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._track_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # The next request's head is owed from now, whether or not it has begun.
        self._track_deadline()

    def send_400_response(self, msg: str) -> None:
        status = self.conn.error_status if self.conn.error_status in _ERROR_CODES else 400
        messages = {
            400: "Malformed HTTP request.",
            431: f"Request headers too large: at most {self.limits.max_headers} fields and "
            f"{self.limits.max_header_bytes} bytes.",
        }
        self._send_error(status, messages[status])

    def _track_deadline(self) -> None:
        """Arm the deadline the connection's state calls for, keeping a running one."""
        if self.transport.is_closing():
            self._cancel_deadline()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            delay, on_expiry = self.limits.header_timeout_s, self._headers_timed_out
        elif state is h11.SEND_BODY:
            delay, on_expiry = self.limits.body_timeout_s, self._body_timed_out
        else:
            self._cancel_deadline()
            return
        if self._waiting_for is not state:
            self._cancel_deadline()
            self._waiting_for = state
            self._deadline = self.loop.call_later(delay, on_expiry)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._waiting_for = None

    def _headers_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        started, _ = self.conn.trailing_data
        if not started:
            self.transport.close()  # idle since it opened: nobody to tell
            return
        timeout = self.limits.header_timeout_s
        self._send_error(408, f"Request headers not received within {timeout}s.")

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_started:
            self.transport.close()
            return
        # The app sees the client leave; its own answer would go nowhere.
        cycle.disconnected = True
        cycle.message_event.set()
        self._send_error(408, f"Request body not received within {self.limits.body_timeout_s}s.")

    def _send_error(self, status: int, message: str) -> None:
        """Answer `status` in the shared error shape, then close the connection."""
        body = json.dumps(
            {
                "error": {
                    "message": message,
                    "type": _ERROR_TYPES[status],
                    "param": None,
                    "code": _ERROR_CODES[status],
                    "service": self.limits.service,
                    "request_id": None,
                }
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        events = [h11.Response(status_code=status, headers=headers), h11.Data(data=body)]
        try:
            output = [self.conn.send(event) or b"" for event in [*events, h11.EndOfMessage()]]
        except h11.LocalProtocolError:
            output = []  # a response has already begun: only closing is left
        self.transport.write(b"".join(output))
        self.transport.close()


def limited_protocol(limits: ConnectionLimits) -> type[LimitedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, bound to `limits`."""
    return type("ServiceH11Protocol", (LimitedH11Protocol,), {"limits": limits})


def serve(
    create_app: Callable[[S], FastAPI],
    settings_factory: Callable[[], S],
) -> None:
    """Run a service in this process until SIGINT/SIGTERM.

    Invalid settings end the process with status 2 and a message naming the
    variable to fix, not a stack trace.
    """
    try:
        settings = settings_factory()
    except ValidationError as exc:
        lines = [f"invalid configuration ({exc.error_count()} error(s)):"]
        for err in exc.errors():
            lines.append(f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}")
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.service_name, settings.log_level, settings.log_json)
    fix_mmap_threshold(settings.malloc_mmap_threshold_bytes)
    app = create_app(settings)
    uvicorn.run(app, **server_options(settings))


def server_options(settings: ServiceSettings) -> dict[str, Any]:
    """uvicorn's keyword arguments for a service: address, protocol and limits."""
    return {
        "host": settings.host,
        "port": settings.port,
        "http": limited_protocol(ConnectionLimits.from_settings(settings)),
        "h11_max_incomplete_event_size": settings.http_max_header_bytes,
        "timeout_keep_alive": settings.http_keepalive_timeout_s,
        "limit_concurrency": settings.http_max_concurrency,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
        "server_header": False,
    }
