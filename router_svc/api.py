"""router_svc's routes: `POST /v1/route`, `POST /v1/dispatch`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from common.contracts.router import (
    DispatchRequest,
    DispatchResponse,
    RouteRequest,
    RouteResponse,
)
from common.disconnect import cancel_on_disconnect
from router_svc.deps import DispatcherDep, RouterDep
from router_svc.route_decision import check_sizes
from router_svc.streaming import stream_response

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["routing"])


@router.post("/route", response_model=RouteResponse)
async def route(body: RouteRequest, intent_router: RouterDep) -> RouteResponse:
    history = body.history or []
    check_sizes(intent_router.settings, body.text, history)
    # The encoder is CPU work; a thread keeps the event loop answering meanwhile.
    return await asyncio.to_thread(intent_router.route, body.text, history)


@router.post(
    "/dispatch",
    response_model=DispatchResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def dispatch(
    body: DispatchRequest, request: Request, dispatcher: DispatcherDep
) -> DispatchResponse | Response:
    prepared = await dispatcher.prepare(body)
    if body.stream:
        return stream_response(dispatcher, prepared)
    # A caller that leaves stops the plan: its upstream calls close, and so on down the line.
    return await cancel_on_disconnect(request, dispatcher.execute(prepared))
