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
import logging
from collections.abc import AsyncIterator

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from common.contracts.dispatch_events import DispatchEvent, DoneEvent, ErrorEvent
from common.contracts.errors import ErrorDetail
from common.errors import INTERNAL_ERROR_MESSAGE, ServiceError
from common.request_context import current_request_id
from common.streaming import SSE_HEADERS
from router_svc.dispatch import Dispatcher
from router_svc.plan_run import Prepared

__all__ = ["DispatchStream", "sse", "stream_response"]

logger = logging.getLogger("router_svc.streaming")
SERVICE = "router_svc"


def sse(event: DispatchEvent | str) -> str:
    data = event if isinstance(event, str) else event.model_dump_json()
    return f"data: {data}\n\n"


class DispatchStream:
    """The plan's task and its events; `stop` cancels the task (the caller went away)."""

    def __init__(self, dispatcher: Dispatcher, prepared: Prepared) -> None:
        self.dispatcher = dispatcher
        self.prepared = prepared
        self.queue: asyncio.Queue[DispatchEvent | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def _emit(self, event: DispatchEvent) -> None:
        await self.queue.put(event)

    async def _work(self) -> None:
        try:
            response = await self.dispatcher.execute(self.prepared, self._emit)
            await self.queue.put(DoneEvent(**dict(response)))
        except ServiceError as exc:
            detail = exc.detail(SERVICE, current_request_id())
            await self.queue.put(ErrorEvent(error=detail, status=exc.status_code))
        except Exception:
            logger.exception("dispatch failed while streaming")
            detail = ErrorDetail(
                message=INTERNAL_ERROR_MESSAGE,
                type="server_error",
                code="internal_error",
                service=SERVICE,
                request_id=current_request_id(),
            )
            await self.queue.put(ErrorEvent(error=detail, status=500))
        finally:
            await self.queue.put(None)

    async def events(self) -> AsyncIterator[str]:
        self.task = asyncio.create_task(self._work())
        try:
            while (event := await self.queue.get()) is not None:
                yield sse(event)
            yield sse("[DONE]")
        finally:
            self.stop()

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


def stream_response(dispatcher: Dispatcher, prepared: Prepared) -> StreamingResponse:
    stream = DispatchStream(dispatcher, prepared)
    # Starlette cancels the events when the caller leaves; a generator cancelled while it
    # waits on the caller is closed late, so the response's end stops the plan as well.
    return StreamingResponse(
        stream.events(),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
        background=BackgroundTask(stream.stop),
    )
