"""Gateway routes (thin: HTTP in, logic in named modules)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from common.contracts.health import GatewayReadiness
from gateway.readiness import platform_readiness

__all__ = ["router"]

router = APIRouter()


@router.get("/readyz", response_model=GatewayReadiness, tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    readiness = await platform_readiness(
        state.probe_clients, state.redis.ping, state.settings.readiness_timeout_s
    )
    status = 200 if readiness.status == "ready" else 503
    return JSONResponse(readiness.model_dump(), status_code=status)
