"""Who a request is made for: tenant, API key id, role and scopes, carried across services.

The gateway is the only service that authenticates: it verifies the caller's
API key and sets the `Caller` of the request (`caller_var`). From there the
caller travels with every service-to-service call as four headers
(`ServiceClient` adds them, `RequestContextMiddleware` of the receiving
service reads them back), so that memory_svc keys its data by tenant,
rag_svc decides which collections the caller may read or write, tools_svc
and reasoning_svc offer only the tools the key's scopes allow, and every
log line and audit record names the key and the tenant.

Internal services trust these headers from their network: only the gateway
is published, and the gateway never takes them from a client. A call that
arrives without them (an operator's direct call, the launcher building the
default index) is the platform itself: `INTERNAL_CALLER`, the default tenant
with every scope.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_MEMBER_SCOPES",
    "DEFAULT_TENANT",
    "INTERNAL_CALLER",
    "KEY_ID_HEADER",
    "ROLE_HEADER",
    "SCOPES_HEADER",
    "TENANT_HEADER",
    "TENANT_PATTERN",
    "TOOL_SCOPES",
    "Caller",
    "InvalidCaller",
    "Role",
    "caller_from_headers",
    "caller_var",
    "current_caller",
    "parse_scopes",
    "valid_tenant",
]

TENANT_HEADER = "X-Tenant-ID"
KEY_ID_HEADER = "X-Key-ID"
ROLE_HEADER = "X-Key-Role"
SCOPES_HEADER = "X-Key-Scopes"

DEFAULT_TENANT = "default"
# Tenant names go into Redis keys and storage names: no ':' '/' or '.' ever.
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_TENANT_RE = re.compile(TENANT_PATTERN)
_KEY_ID_RE = re.compile(r"^[0-9a-f]{1,32}$")

Role = Literal["admin", "member"]
ROLES: tuple[Role, ...] = ("admin", "member")

# What a key may be allowed to do. Running code and fetching URLs are never granted by
# default: an admin gives them to a key by name.
ALL_SCOPES: tuple[str, ...] = (
    "chat",
    "embeddings",
    "images",
    "documents:read",
    "documents:write",
    "feedback",
    "tools:python",
    "tools:http",
)
# The scope each tool of tools_svc needs (tools not named here: any key). tools_svc
# enforces it; reasoning_svc and router_svc read it to offer only what a key may use.
TOOL_SCOPES: dict[str, str] = {
    "python": "tools:python",
    "http_get": "tools:http",
    "knowledge_search": "documents:read",
}
# What a new key gets unless told otherwise: everything but the tools that run code or
# reach the network.
DEFAULT_MEMBER_SCOPES: tuple[str, ...] = tuple(s for s in ALL_SCOPES if not s.startswith("tools:"))


class InvalidCaller(ValueError):
    """Caller headers that do not parse (a tenant or scope outside the allowed shapes)."""


def valid_tenant(value: str) -> bool:
    return bool(_TENANT_RE.match(value))


def parse_scopes(text: str) -> frozenset[str]:
    """Scopes from a space- or comma-separated list; unknown names are refused."""
    scopes = frozenset(s for s in re.split(r"[\s,]+", text.strip()) if s)
    unknown = sorted(scopes - set(ALL_SCOPES))
    if unknown:
        raise InvalidCaller(f"unknown scope(s) {unknown}; known: {list(ALL_SCOPES)}")
    return scopes


@dataclass(frozen=True)
class Caller:
    """The verified identity a request runs under."""

    tenant: str = DEFAULT_TENANT
    # None: the platform itself (no API key behind the call).
    key_id: str | None = None
    role: Role = "admin"
    scopes: frozenset[str] = field(default_factory=lambda: frozenset(ALL_SCOPES))

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    def headers(self) -> dict[str, str]:
        """The headers that carry this caller to another service."""
        headers = {
            TENANT_HEADER: self.tenant,
            ROLE_HEADER: self.role,
            SCOPES_HEADER: " ".join(sorted(self.scopes)),
        }
        if self.key_id is not None:
            headers[KEY_ID_HEADER] = self.key_id
        return headers


INTERNAL_CALLER = Caller()

# Set by the gateway once a key is verified, and by every other service's middleware
# from the caller headers; None: no caller was named (the platform itself).
caller_var: ContextVar[Caller | None] = ContextVar("caller", default=None)


def current_caller() -> Caller:
    """The caller of the request being served (`INTERNAL_CALLER` when none was named)."""
    return caller_var.get() or INTERNAL_CALLER


def caller_from_headers(headers: Mapping[str, str]) -> Caller | None:
    """The caller named by a request's headers; None when it names none.

    `headers` is matched case-insensitively by the lower-cased names.
    Raises `InvalidCaller` for values outside the allowed shapes.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    tenant = lowered.get(TENANT_HEADER.lower())
    if tenant is None:
        return None
    if not valid_tenant(tenant):
        raise InvalidCaller(f"{TENANT_HEADER} must match {TENANT_PATTERN}")
    role = lowered.get(ROLE_HEADER.lower(), "member")
    if role not in ROLES:
        raise InvalidCaller(f"{ROLE_HEADER} must be one of {list(ROLES)}")
    key_id = lowered.get(KEY_ID_HEADER.lower())
    if key_id is not None and not _KEY_ID_RE.match(key_id):
        raise InvalidCaller(f"{KEY_ID_HEADER} must be a hex key id")
    # A named tenant without a scopes header gets none: scopes are never assumed.
    scopes = parse_scopes(lowered.get(SCOPES_HEADER.lower(), ""))
    return Caller(tenant=tenant, key_id=key_id, role=role, scopes=scopes)
