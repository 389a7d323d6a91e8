"""Cancel a request's work when its client disconnects.

Starlette cancels a streamed response whose client leaves, but not a plain
handler: a non-streamed request whose client is gone would run to its end.
`cancel_on_disconnect` runs the handler's work next to a watcher of the ASGI
receive channel and cancels the work when `http.disconnect` comes first. A
cancelled upstream call closes its connection, so the next service sees its
own client leave and cancels in turn: the cancellation travels hop by hop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["CLIENT_CLOSED_REQUEST", "cancel_on_disconnect"]

T = TypeVar("T")

# nginx's status for "the client closed the request": what the access log records.
CLIENT_CLOSED_REQUEST = 499


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T | Response:
    """`work`'s result; a 499 response (that nobody reads) if the client left first.

    Call it once the request body has been read (FastAPI has read it before
    the handler runs): the watcher takes every message from the channel.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return task.result()
