"""reasoning_svc's routes: `POST /v1/reason`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from common.contracts.reasoning import ReasonRequest, ReasonResponse
from common.disconnect import cancel_on_disconnect
from reasoning_svc.deps import ReasonerDep

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["reasoning"])


@router.post("/reason", response_model=ReasonResponse)
async def reason(
    body: ReasonRequest, request: Request, reasoner: ReasonerDep
) -> Response | ReasonResponse:
    # A caller that leaves stops the run: no further model or tool call starts.
    return await cancel_on_disconnect(request, reasoner.reason(body))
