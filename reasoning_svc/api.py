"""reasoning_svc's routes (DESIGN.md, reasoning_svc): `POST /v1/reason`."""

from __future__ import annotations

from fastapi import APIRouter

from common.contracts.reasoning import ReasonRequest, ReasonResponse
from reasoning_svc.deps import ReasonerDep

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["reasoning"])


@router.post("/reason", response_model=ReasonResponse)
async def reason(body: ReasonRequest, reasoner: ReasonerDep) -> ReasonResponse:
    return await reasoner.reason(body)
