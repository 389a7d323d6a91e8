"""`POST /v1/chat/completions`: model `auto` through router_svc, other models to moe_svc.

For `auto`, router_svc's dispatch result (or its SSE events) becomes an
OpenAI `chat.completion` (or `chat.completion.chunk`s) whose final answer is
formatted and verified by the response generator and which carries the
`pipeline` extension. Other models pass straight to moe_svc, streams event by
event.

A client that leaves cancels the work: a stream's end closes the upstream
connection, and a non-streamed request is cancelled by `cancel_on_disconnect`;
either way the upstream sees its client leave and stops in turn.

Every answer token is charged to the caller once the answer is out: the
completion tokens of a finished answer, or an estimate of what was sent of a
stream cut short. moe_svc is always asked for a stream's usage; its usage
chunk reaches the client only when the client asked for it.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
from fastapi import Request
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response, StreamingResponse

from common.disconnect import cancel_on_disconnect
from common.errors import BadRequest, UpstreamUnavailable
from common.http_client import ServiceClient
from common.request_context import current_request_id
from common.streaming import SSE_HEADERS
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


class _Meter:
    """What a stream sent, so that its tokens are charged however it ends."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        # The answer's own count, once its end says it (moe_svc's usage, the router's done).
        self.completion_tokens: int | None = None

    def sent(self, content: str) -> None:
        if content:
            self.pieces.append(content)

    def tokens(self) -> int:
        if self.completion_tokens is not None:
            return self.completion_tokens
        if not self.pieces:
            return 0
        # Cut short: each piece holds a token or more; text is about 4 characters a token.
        return max(len(self.pieces), estimate_tokens("".join(self.pieces)))


def _end_of_stream(request: Request, stack: AsyncExitStack, meter: _Meter) -> BackgroundTask:
    """Runs when the response ends, the client gone or not: close the upstream, charge."""

    async def end() -> None:
        await stack.aclose()
        await charge_completion(request, meter.tokens())

    return BackgroundTask(end)


def _broken_stream(upstream: str) -> str:
    error = UpstreamUnavailable(
        f"{upstream}'s stream broke off before its end.", code="upstream_stream_broken"
    )
    return _sse({"error": error.detail("gateway", current_request_id()).model_dump()})


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
    meter = _Meter()

    async def events() -> AsyncIterator[str]:
        async with stack:
            writer = _ChunkWriter(f"chatcmpl-{uuid.uuid4().hex[:24]}")
            yield writer.chunk({"role": "assistant", "content": ""})
            try:
                async for line in upstream.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    event = json.loads(data)
                    kind = event.get("type")
                    if kind == "delta" and event.get("content"):
                        meter.sent(event["content"])
                        yield writer.chunk({"content": event["content"]})
                    elif kind in ("route", "step"):
                        # Progress of the pipeline, for the UI; OpenAI clients ignore it.
                        yield writer.chunk({}, pipeline_event=event)
                    elif kind == "done":
                        async for piece in _finish(body, writer, event, meter, include_usage):
                            yield piece
                    elif kind == "error":
                        yield _sse({"error": event.get("error") or {"message": "dispatch failed"}})
            except httpx.HTTPError:
                yield _broken_stream("router_svc")
            yield _sse("[DONE]")

    # The end also closes the upstream when the client left before the stream's first byte.
    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
        background=_end_of_stream(request, stack, meter),
    )


async def _finish(
    body: GatewayChatRequest,
    writer: _ChunkWriter,
    event: dict[str, Any],
    meter: _Meter,
    include_usage: bool,
) -> AsyncIterator[str]:
    content = str((event.get("message") or {}).get("content") or "")
    pipeline = dict(event.get("pipeline") or {})
    sources = list(pipeline.get("sources") or [])
    streamed = "".join(meter.pieces)
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
        meter.sent(tail)
        yield writer.chunk({"content": tail})
    dispatch_id = str(event.get("id") or "")
    _, message_id = _ids(dispatch_id)
    usage = _usage(body, streamed + tail, pipeline)
    meter.completion_tokens = usage["completion_tokens"]
    yield writer.chunk(
        {},
        "stop",
        pipeline=pipeline,
        message_id=message_id,
        session_id=event.get("session_id"),
    )
    if include_usage:
        yield writer.usage(usage)


def _relay_event(data: str, meter: _Meter, include_usage: bool) -> str | None:
    """One of moe_svc's stream events for the client (None: not for the client)."""
    if data == "[DONE]":
        return _sse(data)
    try:
        chunk = json.loads(data)
    except ValueError:
        return _sse(data)
    if not isinstance(chunk, dict):
        return _sse(data)
    for choice in chunk.get("choices") or []:
        meter.sent(str((choice.get("delta") or {}).get("content") or ""))
    usage = chunk.get("usage")
    if not usage:
        return _sse(data)
    meter.completion_tokens = int(usage.get("completion_tokens") or 0)
    if include_usage:
        return _sse(data)
    # Strict OpenAI clients do not expect the usage chunk they did not ask for.
    del chunk["usage"]
    if not chunk.get("choices") and not chunk.get("experts"):
        return None
    return _sse(chunk)


async def _moe_stream(request: Request, body: GatewayChatRequest, raw: dict[str, Any]) -> Any:
    settings: GatewaySettings = request.app.state.settings
    moe: ServiceClient = request.app.state.upstreams["moe_svc"]
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    options = raw.get("stream_options")
    asked = options if isinstance(options, dict) else {}
    payload = {**raw, "stream_options": {**asked, "include_usage": True}}
    stack = AsyncExitStack()
    async with upstream_timer():
        # Opened before the response starts: moe_svc's 4xx/5xx reach the caller as is.
        upstream = await stack.enter_async_context(
            moe.stream(
                "POST", "/v1/chat/completions", json=payload, timeout_s=settings.chat_timeout_s
            )
        )
    meter = _Meter()

    async def events() -> AsyncIterator[str]:
        async with stack:
            try:
                async for line in upstream.aiter_lines():
                    if line.startswith("data:"):
                        event = _relay_event(line[5:].strip(), meter, include_usage)
                        if event is not None:
                            yield event
            except httpx.HTTPError:
                yield _broken_stream("moe_svc")

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers=SSE_HEADERS,
        background=_end_of_stream(request, stack, meter),
    )


async def _moe(request: Request, raw: dict[str, Any]) -> Response:
    settings: GatewaySettings = request.app.state.settings
    moe: ServiceClient = request.app.state.upstreams["moe_svc"]
    async with upstream_timer():
        result = await moe.post_json("/v1/chat/completions", raw, timeout_s=settings.chat_timeout_s)
    tokens = int((result.get("usage") or {}).get("completion_tokens", 0))
    return JSONResponse(result, background=BackgroundTask(charge_completion, request, tokens))


async def chat_completion(request: Request, body: GatewayChatRequest, raw: dict[str, Any]) -> Any:
    """Answer one chat completion request (see the module docstring)."""
    if body.model != AUTO_MODEL:
        raw.pop("session_id", None)
        if body.stream:
            return await _moe_stream(request, body, raw)
        return await cancel_on_disconnect(request, _moe(request, raw))
    if body.n != 1:
        raise BadRequest("Model 'auto' answers with one choice (n=1).", param="n", code="invalid_n")
    router: ServiceClient = request.app.state.upstreams["router_svc"]
    if body.stream:
        return await _auto_stream(request, body, router)
    return await cancel_on_disconnect(request, _auto(request, body, router))
