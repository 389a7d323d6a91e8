"""`POST /v1/chat/completions`: model `auto` through router_svc, other models to moe_svc.

For `auto`, router_svc's dispatch result (or its SSE events) becomes an
OpenAI `chat.completion` (or `chat.completion.chunk`s) whose final answer is
formatted and verified by the response generator and which carries the
`pipeline` extension. Other models pass straight to moe_svc, streams byte for
byte. Leaving a stream early closes the upstream connection, which cancels
the upstream's work.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, StreamingResponse

from common.errors import BadRequest
from common.http_client import ServiceClient
from common.streaming import SSE_HEADERS, sse_passthrough
from gateway.edge import upstream_timer
from gateway.response_generator import format_answer, sources_markdown, verify_citations
from gateway.schemas import AUTO_MODEL, GatewayChatRequest
from gateway.security import charge_completion, estimate_tokens
from gateway.settings import GatewaySettings

__all__ = ["chat_completion"]

logger = logging.getLogger("gateway.chat")

# memory_svc's id pattern: other values are not passed on as the user id.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,127}$")


def _dispatch_payload(body: GatewayChatRequest, stream: bool) -> dict[str, Any]:
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
    ]
    options: dict[str, Any] = {}
    if body.temperature is not None:
        options["temperature"] = body.temperature
    max_tokens = body.max_completion_tokens or body.max_tokens
    if max_tokens is not None:
        options["max_tokens"] = min(max_tokens, 8192)
    payload: dict[str, Any] = {"messages": messages, "stream": stream, "options": options}
    if body.session_id is not None:
        payload["session_id"] = body.session_id
    if body.user is not None and _ID.match(body.user):
        payload["user"] = body.user
    return payload


def _usage(body: GatewayChatRequest, content: str, pipeline: dict[str, Any]) -> dict[str, int]:
    reasoning_usage = (pipeline.get("reasoning") or {}).get("usage") or {}
    prompt = estimate_tokens("".join(m.text() for m in body.messages))
    completion = int(reasoning_usage.get("completion_tokens") or estimate_tokens(content))
    total = prompt + completion
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _ids(dispatch_id: str) -> tuple[str, str]:
    # The router stores the answer in memory as `<dispatch id>-assistant`: what feedback rates.
    return f"chatcmpl-{dispatch_id}", f"{dispatch_id}-assistant"


async def _auto(request: Request, body: GatewayChatRequest, router: ServiceClient) -> JSONResponse:
    settings: GatewaySettings = request.app.state.settings
    async with upstream_timer():
        result = await router.post_json(
            "/v1/dispatch", _dispatch_payload(body, False), timeout_s=settings.chat_timeout_s
        )
    pipeline = dict(result.get("pipeline") or {})
    formatted = format_answer(str(result["message"]["content"]), pipeline)
    pipeline["verification"] = formatted.verification
    completion_id, message_id = _ids(str(result.get("id") or uuid.uuid4().hex))
    usage = _usage(body, formatted.content, pipeline)
    return JSONResponse(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": AUTO_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": formatted.content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": usage,
            "pipeline": pipeline,
            "session_id": result.get("session_id"),
            "message_id": message_id,
        },
        # The answer's tokens are charged once it is sent, off the caller's latency.
        background=BackgroundTask(charge_completion, request, usage["completion_tokens"]),
    )


def _sse(data: dict[str, Any] | str) -> str:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n"


class _ChunkWriter:
    def __init__(self, completion_id: str) -> None:
        self.head = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": AUTO_MODEL,
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _sse({**self.head, "choices": [choice], **extra})

    def usage(self, usage: dict[str, int]) -> str:
        return _sse({**self.head, "choices": [], "usage": usage})


async def _auto_stream(
    request: Request, body: GatewayChatRequest, router: ServiceClient
) -> StreamingResponse:
    settings: GatewaySettings = request.app.state.settings
    stack = AsyncExitStack()
    async with upstream_timer():
        # Opened before the response starts: the router's 4xx/5xx reach the caller as is.
        upstream = await stack.enter_async_context(
            router.stream(
                "POST",
                "/v1/dispatch",
                json=_dispatch_payload(body, True),
                timeout_s=settings.chat_timeout_s,
            )
        )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)

    async def events() -> AsyncIterator[str]:
        async with stack:
            writer = _ChunkWriter(f"chatcmpl-{uuid.uuid4().hex[:24]}")
            yield writer.chunk({"role": "assistant", "content": ""})
            streamed = ""
            async for line in upstream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                kind = event.get("type")
                if kind == "delta" and event.get("content"):
                    streamed += event["content"]
                    yield writer.chunk({"content": event["content"]})
                elif kind in ("route", "step"):
                    # Progress of the pipeline, for the UI; OpenAI clients ignore it.
                    yield writer.chunk({}, pipeline_event=event)
                elif kind == "done":
                    final = _finish(request, body, writer, event, streamed, include_usage)
                    async for piece in final:
                        yield piece
                elif kind == "error":
                    yield _sse({"error": event.get("error") or {"message": "dispatch failed"}})
            yield _sse("[DONE]")

    # Also closes the upstream when the client left before the stream's first byte.
    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
        background=BackgroundTask(stack.aclose),
    )


async def _finish(
    request: Request,
    body: GatewayChatRequest,
    writer: _ChunkWriter,
    event: dict[str, Any],
    streamed: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    content = str((event.get("message") or {}).get("content") or "")
    pipeline = dict(event.get("pipeline") or {})
    sources = list(pipeline.get("sources") or [])
    if not streamed:
        # Nothing was streamed yet: the whole answer can still be cleaned.
        cleaned, report = verify_citations(content, sources, pipeline.get("citations") or [])
        rest = cleaned
    else:
        # What reached the client stays; bad citations in it are flagged, not removed.
        _, report = verify_citations(content, sources, pipeline.get("citations") or [])
        rest = content[len(streamed) :] if content.startswith(streamed) else ""
    pipeline["verification"] = report
    tail = rest + sources_markdown(sources)
    if tail:
        yield writer.chunk({"content": tail})
    dispatch_id = str(event.get("id") or "")
    _, message_id = _ids(dispatch_id)
    usage = _usage(body, streamed + tail, pipeline)
    await charge_completion(request, usage["completion_tokens"])
    yield writer.chunk(
        {},
        "stop",
        pipeline=pipeline,
        message_id=message_id,
        session_id=event.get("session_id"),
    )
    if include_usage:
        yield writer.usage(usage)


_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


async def _charging_usage(request: Request, chunks: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """Relay moe_svc's stream unchanged; charge the usage chunk's tokens at its end."""
    tail = b""
    async for chunk in chunks:
        yield chunk
        data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
        tail = (tail + data)[-4096:]  # the usage chunk comes last
    counts = _COMPLETION_TOKENS.findall(tail)
    if counts:
        await charge_completion(request, int(counts[-1]))


async def _moe(request: Request, body: GatewayChatRequest, raw: dict[str, Any]) -> Any:
    settings: GatewaySettings = request.app.state.settings
    moe: ServiceClient = request.app.state.upstreams["moe_svc"]
    raw.pop("session_id", None)
    if body.stream:
        async with upstream_timer():
            response = await sse_passthrough(
                moe, "POST", "/v1/chat/completions", json=raw, timeout_s=settings.chat_timeout_s
            )
        response.body_iterator = _charging_usage(request, response.body_iterator)
        return response
    async with upstream_timer():
        result = await moe.post_json("/v1/chat/completions", raw, timeout_s=settings.chat_timeout_s)
    tokens = int((result.get("usage") or {}).get("completion_tokens", 0))
    return JSONResponse(result, background=BackgroundTask(charge_completion, request, tokens))


async def chat_completion(request: Request, body: GatewayChatRequest, raw: dict[str, Any]) -> Any:
    """Answer one chat completion request (see the module docstring)."""
    if body.model != AUTO_MODEL:
        return await _moe(request, body, raw)
    if body.n != 1:
        raise BadRequest("Model 'auto' answers with one choice (n=1).", param="n", code="invalid_n")
    router: ServiceClient = request.app.state.upstreams["router_svc"]
    if body.stream:
        return await _auto_stream(request, body, router)
    return await _auto(request, body, router)
