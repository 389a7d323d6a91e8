"""Health and readiness bodies (`/healthz`, `/readyz`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

__all__ = [
    "CheckResult",
    "GatewayReadiness",
    "HealthResponse",
    "ReadinessResponse",
    "ServiceStatus",
]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    service: str


class CheckResult(BaseModel):
    """One dependency of a service, as seen by its readiness probe."""

    status: Literal["up", "down"]
    latency_ms: float
    # A required dependency that is down makes the service not ready; an optional
    # one only degrades what the service can do.
    required: bool = True
    error: str | None = None


class ReadinessResponse(BaseModel):
    status: Literal["ready", "not_ready"]
    service: str
    checks: dict[str, CheckResult]


class ServiceStatus(BaseModel):
    status: Literal["up", "down"]
    latency_ms: float
    error: str | None = None


class GatewayReadiness(BaseModel):
    """The gateway's `/readyz`: the platform as a whole (docs/architecture.md)."""

    status: Literal["ready", "degraded"]
    services: dict[str, ServiceStatus]
