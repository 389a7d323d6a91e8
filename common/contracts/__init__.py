"""Wire models shared between services (requests, responses, errors)."""

from common.contracts.errors import ErrorDetail, ErrorResponse
from common.contracts.health import (
    CheckResult,
    GatewayReadiness,
    HealthResponse,
    ReadinessResponse,
    ServiceStatus,
)

__all__ = [
    "CheckResult",
    "ErrorDetail",
    "ErrorResponse",
    "GatewayReadiness",
    "HealthResponse",
    "ReadinessResponse",
    "ServiceStatus",
]
