"""`POST /v1/dispatch` with `stream: true`: the plan's progress and the answer as SSE.

Events, each `data: <json>` and a blank line: `route` first, then `step`
after every step and `delta` for each piece of the answer as it is made,
then `done` with the message and the pipeline, or `error` with the shared
error object, then `data: [DONE]`. The request is checked and routed before
the stream starts, so bad input still gets a plain 4xx. When the caller goes
away, the plan's task is cancelled.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import StreamingResponse

from common.errors import INTERNAL_ERROR_MESSAGE, ServiceError
from common.request_context import current_request_id
from common.streaming import SSE_HEADERS
from router_svc.dispatch import Dispatcher, Prepared

__all__ = ["dispatch_events", "sse"]

logger = logging.getLogger("router_svc.streaming")
SERVICE = "router_svc"


def sse(event: dict[str, Any] | str) -> str:
    data = event if isinstance(event, str) else json.dumps(event, ensure_ascii=False)
    return f"data: {data}\n\n"


async def dispatch_events(dispatcher: Dispatcher, prepared: Prepared) -> AsyncIterator[str]:
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def emit(event: dict[str, Any]) -> None:
        await queue.put(event)

    async def work() -> None:
        try:
            response = await dispatcher.execute(prepared, emit)
            await queue.put({"type": "done", **response.model_dump(mode="json")})
        except ServiceError as exc:
            detail = exc.detail(SERVICE, current_request_id())
            error = {"type": "error", "error": detail.model_dump(), "status": exc.status_code}
            await queue.put(error)
        except Exception:
            logger.exception("dispatch failed while streaming")
            error = {
                "message": INTERNAL_ERROR_MESSAGE,
                "type": "server_error",
                "code": "internal_error",
                "service": SERVICE,
                "request_id": current_request_id(),
            }
            await queue.put({"type": "error", "error": error, "status": 500})
        finally:
            await queue.put(None)

    task = asyncio.create_task(work())
    try:
        while (event := await queue.get()) is not None:
            yield sse(event)
        yield sse("[DONE]")
    finally:
        if not task.done():
            task.cancel()


def stream_response(dispatcher: Dispatcher, prepared: Prepared) -> StreamingResponse:
    return StreamingResponse(
        dispatch_events(dispatcher, prepared), media_type="text/event-stream", headers=SSE_HEADERS
    )
