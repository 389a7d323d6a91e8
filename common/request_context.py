"""The request id of the request being served, visible to logs and clients."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

__all__ = [
    "REQUEST_ID_HEADER",
    "client_request_id_var",
    "current_request_id",
    "new_request_id",
    "sanitize_request_id",
]

REQUEST_ID_HEADER = "X-Request-ID"

# A caller-supplied id is echoed into logs and headers, so only a safe shape is kept.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# At the public entry the platform makes its own request ids; what a client sent as
# `X-Request-ID` is kept here (and in the logs) so that the client can still find it.
client_request_id_var: ContextVar[str | None] = ContextVar("client_request_id", default=None)


def new_request_id() -> str:
    """Return a fresh request id (32 hex characters)."""
    return uuid.uuid4().hex


def sanitize_request_id(value: str | None) -> str:
    """Return `value` when it is a safe request id, else a fresh one."""
    if value and _SAFE_REQUEST_ID.match(value):
        return value
    return new_request_id()


def current_request_id() -> str | None:
    """Return the id of the request being served in this context, if any."""
    return request_id_var.get()
