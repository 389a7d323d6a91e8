"""The request id of the request being served, visible to logs and clients, and the
core-model version the request is served by.

A version (`X-Model-Version`) is chosen once, at the gateway, when a candidate
model is rolled out to a share of the traffic; it then travels with every
service-to-service call of the request like the request id, so that whichever
service asks moe_svc for text, the same version answers. No header: the
current version.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

__all__ = [
    "MODEL_VERSION_HEADER",
    "MODEL_VERSION_PATTERN",
    "REQUEST_ID_HEADER",
    "client_request_id_var",
    "current_model_version",
    "current_request_id",
    "model_version_var",
    "new_request_id",
    "sanitize_request_id",
    "valid_model_version",
]

REQUEST_ID_HEADER = "X-Request-ID"
MODEL_VERSION_HEADER = "X-Model-Version"
# Version ids name directories (`<models>/versions/<id>`): no '/' and no leading '.'.
MODEL_VERSION_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_MODEL_VERSION_RE = re.compile(MODEL_VERSION_PATTERN)

# A caller-supplied id is echoed into logs and headers, so only a safe shape is kept.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
# At the public entry the platform makes its own request ids; what a client sent as
# `X-Request-ID` is kept here (and in the logs) so that the client can still find it.
client_request_id_var: ContextVar[str | None] = ContextVar("client_request_id", default=None)
# The core-model version chosen for this request (None: the current one).
model_version_var: ContextVar[str | None] = ContextVar("model_version", default=None)


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


def valid_model_version(value: str) -> bool:
    """Whether `value` has the shape of a model version id."""
    return bool(_MODEL_VERSION_RE.match(value))


def current_model_version() -> str | None:
    """The core-model version chosen for the request being served (None: the current one)."""
    return model_version_var.get()
