"""Server-sent events: relayed from an upstream unchanged, or read event by event."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import AsyncExitStack
from typing import Any

from starlette.responses import StreamingResponse

from common.http_client import ServiceClient

__all__ = ["SSE_HEADERS", "sse_data", "sse_passthrough"]

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def sse_data(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    """The `data:` payloads of an SSE stream's lines, up to its `[DONE]`."""
    async for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield data


async def sse_passthrough(
    client: ServiceClient,
    method: str,
    path: str,
    *,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
) -> StreamingResponse:
    """Relay an upstream stream (SSE) to the caller byte for byte.

    The upstream call is opened before the response starts, so its errors
    reach the caller as a normal error response with their status. When the
    caller disconnects, the upstream connection is closed too.
    """
    stack = AsyncExitStack()
    upstream = await stack.enter_async_context(
        client.stream(method, path, json=json, headers=headers, timeout_s=timeout_s)
    )

    async def relay() -> AsyncIterator[bytes]:
        async with stack:
            async for chunk in upstream.aiter_raw():
                yield chunk

    return StreamingResponse(
        relay(),
        status_code=upstream.status_code,
        media_type=upstream.headers.get("content-type", "text/event-stream"),
        headers=SSE_HEADERS,
    )
