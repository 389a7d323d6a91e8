"""`POST /v1/chat/completions`: model `auto` through router_svc, other models to moe_svc.

For `auto`, router_svc's dispatch result (or its SSE events) becomes an
OpenAI `chat.completion` (or `chat.completion.chunk`s) whose final answer is
formatted and verified by the response generator and which carries the
`pipeline` extension. OpenAI's answer controls (tools, response_format, stop,
seed, n, logprobs...) travel in the dispatch's options; the router's choices
come back with their own tool calls, logprobs and finish reasons (a plan that
cannot honour a control answers 400). Other models pass straight to moe_svc,
streams event by event.

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
from pydantic import BaseModel, ValidationError
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, Response, StreamingResponse

from common.caller import current_caller
from common.contracts.dispatch_events import (
    DISPATCH_EVENT,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    RouteEvent,
    StepEvent,
)
from common.contracts.openai import ChoiceLogprobs, FinishReason, Usage
from common.contracts.router import (
    ANSWER_CONTROLS,
    DispatchMessage,
    DispatchOptions,
    DispatchRequest,
    DispatchResponse,
    Pipeline,
)
from common.disconnect import cancel_on_disconnect
from common.errors import BadRequest, BadUpstreamResponse, ServiceError, UpstreamUnavailable
from common.http_client import ServiceClient
from common.image_input import ImageLimits, check_images
from common.models import ModelRegistry
from common.request_context import MODEL_VERSION_HEADER, current_request_id, model_version_var
from common.streaming import SSE_HEADERS, sse_data
from gateway.edge import upstream_timer
from gateway.ratelimit import RateLimiter
from gateway.response_generator import format_answer, sources_markdown, verify_citations
from gateway.rollout_store import Assignment, RolloutStore
from gateway.schemas import (
    AUTO_MODEL,
    AutoChoice,
    AutoChunk,
    AutoChunkChoice,
    AutoCompletion,
    AutoDelta,
    AutoFinalChunk,
    AutoProgressChunk,
    GatewayChatRequest,
    Verification,
    VerifiedPipeline,
)
from gateway.security import charge_completion, estimate_tokens
from gateway.settings import GatewaySettings

__all__ = ["ChatCompletions"]

logger = logging.getLogger("gateway.chat")

# The answer controls passed to the router as the client set them (max_tokens is bounded).
_PASSED_CONTROLS = set(ANSWER_CONTROLS) - {"max_tokens"}
# memory_svc's id pattern: other values are not passed on as the user id.
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,127}$")


def _dispatch_request(body: GatewayChatRequest, stream: bool) -> DispatchRequest:
    messages = [
        DispatchMessage(
            role="system" if m.role == "developer" else m.role,
            # with images, the parts as sent: `auto` shows them to the core model
            content=[p.model_dump(mode="json", exclude_none=True) for p in m.content]
            if m.images() and isinstance(m.content, list)
            else m.text(),
            tool_calls=m.tool_calls,
            tool_call_id=m.tool_call_id,
        )
        for m in body.messages
    ]
    max_tokens = body.max_completion_tokens or body.max_tokens
    options = DispatchOptions(
        collections=body.collections,
        max_tokens=None if max_tokens is None else min(max_tokens, 8192),
        # OpenAI's controls of the answer, for the step that writes it.
        **{name: getattr(body, name) for name in _PASSED_CONTROLS if name != "n"},
        n=None if body.n == 1 else body.n,
    )
    user = body.user if body.user is not None and _ID.match(body.user) else None
    return DispatchRequest(
        messages=messages, session_id=body.session_id, user=user, stream=stream, options=options
    )


def _wire(request: DispatchRequest) -> dict[str, Any]:
    # Unset options and ids are left out: the router applies its own defaults.
    return request.model_dump(mode="json", exclude_none=True)


def _usage(body: GatewayChatRequest, content: str, pipeline: Pipeline) -> Usage:
    prompt = estimate_tokens("".join(m.text() for m in body.messages))
    completion = _reasoning_tokens(pipeline) or estimate_tokens(content)
    total = prompt + completion
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=total)


def _reasoning_tokens(pipeline: Pipeline) -> int:
    """The answer's tokens as reasoning_svc counted them (0: it did not write the answer)."""
    return pipeline.reasoning.usage.completion_tokens if pipeline.reasoning is not None else 0


def _message_id(dispatch_id: str) -> str:
    # The router stores the answer in memory as `<dispatch id>-assistant`: what feedback rates.
    return f"{dispatch_id}-assistant"


def _sse(data: BaseModel | dict[str, Any] | str) -> str:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
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


def _end_of_stream(
    request: Request, stack: AsyncExitStack, meter: _Meter, limiter: RateLimiter
) -> BackgroundTask:
    """Runs when the response ends, the client gone or not: close the upstream, charge."""

    async def end() -> None:
        await stack.aclose()
        await charge_completion(limiter, request, meter.tokens())

    return BackgroundTask(end)


def _broken_stream(upstream: str) -> str:
    error = UpstreamUnavailable(
        f"{upstream}'s stream broke off before its end.", code="upstream_stream_broken"
    )
    return _error_event(error)


def _error_event(error: ServiceError) -> str:
    return _sse({"error": error.detail("gateway", current_request_id()).model_dump()})


def _verified(pipeline: Pipeline, verification: Verification) -> VerifiedPipeline:
    return VerifiedPipeline(**dict(pipeline), verification=verification)


class _ChunkWriter:
    """The `chat.completion.chunk`s of one streamed answer of model `auto`."""

    def __init__(self, completion_id: str) -> None:
        self.id = completion_id
        self.created = int(time.time())

    def _choices(
        self,
        delta: AutoDelta,
        finish: FinishReason | None,
        index: int = 0,
        logprobs: ChoiceLogprobs | None = None,
    ) -> list[AutoChunkChoice]:
        return [AutoChunkChoice(index=index, delta=delta, finish_reason=finish, logprobs=logprobs)]

    def delta(
        self,
        delta: AutoDelta,
        index: int = 0,
        logprobs: ChoiceLogprobs | None = None,
        finish: FinishReason | None = None,
    ) -> str:
        choices = self._choices(delta, finish, index, logprobs)
        return _sse(AutoChunk(id=self.id, created=self.created, model=AUTO_MODEL, choices=choices))

    def progress(self, event: RouteEvent | StepEvent) -> str:
        return _sse(
            AutoProgressChunk(
                id=self.id,
                created=self.created,
                model=AUTO_MODEL,
                choices=self._choices(AutoDelta(), None),
                pipeline_event=event,
            )
        )

    def final(
        self,
        finish: FinishReason,
        pipeline: VerifiedPipeline,
        message_id: str,
        session_id: str | None,
    ) -> str:
        return _sse(
            AutoFinalChunk(
                id=self.id,
                created=self.created,
                model=AUTO_MODEL,
                choices=self._choices(AutoDelta(), finish),
                pipeline=pipeline,
                message_id=message_id,
                session_id=session_id,
            )
        )

    def usage(self, usage: Usage) -> str:
        return _sse(
            AutoChunk(id=self.id, created=self.created, model=AUTO_MODEL, choices=[], usage=usage)
        )


async def _finish(
    body: GatewayChatRequest,
    writer: _ChunkWriter,
    done: DoneEvent,
    meter: _Meter,
    streamed: str,
    include_usage: bool,
) -> AsyncIterator[str]:
    """The first choice's rest (cleaned when nothing was sent yet) and its sources, the
    other choices' ends, then the last chunk with the pipeline, and the usage if asked."""
    content, pipeline = done.message.content, done.pipeline
    cleaned, report = verify_citations(content, pipeline.sources, pipeline.citations)
    if not streamed:
        # Nothing was streamed yet: the whole answer can still be cleaned.
        rest = cleaned
    else:
        # What reached the client stays; bad citations in it are flagged, not removed.
        rest = content[len(streamed) :] if content.startswith(streamed) else ""
    tail = rest + sources_markdown(pipeline.sources)
    if tail:
        meter.sent(tail)
        yield writer.delta(AutoDelta(content=tail))
    for choice in done.choices[1:]:
        yield writer.delta(AutoDelta(), choice.index, finish=choice.finish_reason)
    usage = _usage(body, "".join(meter.pieces) + tail, pipeline)
    meter.completion_tokens = usage.completion_tokens
    first = done.choices[0].finish_reason or "stop"
    yield writer.final(first, _verified(pipeline, report), _message_id(done.id), done.session_id)
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


class ChatCompletions:
    """Answers chat completions with the gateway's settings, upstreams and rate limiter."""

    def __init__(
        self,
        settings: GatewaySettings,
        router: ServiceClient,
        models: ModelRegistry,
        limiter: RateLimiter,
        rollouts: RolloutStore,
    ) -> None:
        """`models` finds the server of a request that names a model (not `auto`);
        `rollouts` assigns it a core-model version while a rollout runs."""
        self.timeout_s = settings.chat_timeout_s
        self.image_limits = ImageLimits.from_settings(settings)
        self.router = router
        self.models = models
        self.limiter = limiter
        self.rollouts = rollouts
        self._assignment: Assignment | None = None

    async def create(
        self, request: Request, body: GatewayChatRequest, raw: dict[str, Any]
    ) -> Response:
        """Answer one chat completion request (see the module docstring)."""
        response = await self._create(request, body, raw)
        if self._assignment is not None:
            response.headers[MODEL_VERSION_HEADER] = self._assignment.label
        return response

    async def _create(
        self, request: Request, body: GatewayChatRequest, raw: dict[str, Any]
    ) -> Response:
        # While a rollout runs, the version chosen here serves every step of the request.
        self._assignment = await self.rollouts.assign(
            current_caller().tenant, current_request_id() or uuid.uuid4().hex
        )
        if self._assignment is not None:
            model_version_var.set(self._assignment.version)
        if any(message.images() for message in body.messages):
            # a bad image is refused here, before anything is stored or asked upstream
            await check_images(body.messages, self.image_limits)
        if body.model != AUTO_MODEL:
            if body.collections is not None:
                raise BadRequest(
                    "`collections` chooses what model 'auto' searches; a model id does not search.",
                    param="collections",
                    code="invalid_value",
                )
            raw.pop("session_id", None)
            if body.stream:
                return await self._moe_stream(request, body, raw)
            return await cancel_on_disconnect(request, self._moe(request, raw))
        if body.grammar is not None:
            raise BadRequest(
                "`grammar` constrains one model's reply; model 'auto' writes its answer in "
                "several steps. Send it with a model id.",
                param="grammar",
                code="unsupported_for_plan",
            )
        if body.stream:
            return await self._auto_stream(request, body)
        return await cancel_on_disconnect(request, self._auto(request, body))

    async def _record(self, message_id: str) -> None:
        """Which version wrote the answer that feedback may rate (while a rollout runs)."""
        if self._assignment is not None:
            await self.rollouts.record_answer(self._assignment, current_caller().tenant, message_id)

    def _charge(self, request: Request, tokens: int) -> BackgroundTask:
        # The answer's tokens are charged once it is sent, off the caller's latency.
        return BackgroundTask(charge_completion, self.limiter, request, tokens)

    async def _auto(self, request: Request, body: GatewayChatRequest) -> JSONResponse:
        async with upstream_timer():
            reply = await self.router.post_json(
                "/v1/dispatch", _wire(_dispatch_request(body, False)), timeout_s=self.timeout_s
            )
        try:
            dispatched = DispatchResponse.model_validate(reply)
        except ValidationError as exc:
            raise BadUpstreamResponse.from_validation("router_svc", exc) from None
        pipeline = dispatched.pipeline
        formatted = format_answer(dispatched.message.content, pipeline.sources, pipeline.citations)
        choices = [AutoChoice.model_validate(c.model_dump()) for c in dispatched.choices]
        if choices[0].message.content is not None:
            # The first choice is the answer the pipeline verified (its citations, sources).
            choices[0].message.content = formatted.content
        texts = "".join(c.message.content or "" for c in choices)
        usage = _usage(body, texts, pipeline)
        answer = AutoCompletion(
            id=f"chatcmpl-{dispatched.id}",
            created=int(time.time()),
            model=AUTO_MODEL,
            choices=choices,
            usage=usage,
            pipeline=_verified(pipeline, formatted.verification),
            session_id=dispatched.session_id,
            message_id=_message_id(dispatched.id),
        )
        await self._record(_message_id(dispatched.id))
        return JSONResponse(
            answer.model_dump(mode="json"),
            background=self._charge(request, usage.completion_tokens),
        )

    async def _auto_stream(self, request: Request, body: GatewayChatRequest) -> StreamingResponse:
        stack = AsyncExitStack()
        async with upstream_timer():
            # Opened before the response starts: the router's 4xx/5xx reach the caller as is.
            upstream = await stack.enter_async_context(
                self.router.stream(
                    "POST",
                    "/v1/dispatch",
                    json=_wire(_dispatch_request(body, True)),
                    timeout_s=self.timeout_s,
                )
            )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        meter = _Meter()

        async def events() -> AsyncIterator[str]:
            async with stack:
                writer = _ChunkWriter(f"chatcmpl-{uuid.uuid4().hex[:24]}")
                yield writer.delta(AutoDelta(role="assistant", content=""))
                # Choices that had their first chunk (with the role), and choice 0's text.
                begun, first_text = {0}, []
                try:
                    async for data in sse_data(upstream.aiter_lines()):
                        try:
                            event = DISPATCH_EVENT.validate_json(data)
                        except ValidationError as exc:
                            yield _error_event(
                                BadUpstreamResponse.from_validation("router_svc", exc)
                            )
                            break
                        match event:
                            case DeltaEvent(index=index, content=content):
                                meter.sent(content)
                                if index == 0:
                                    first_text.append(content)
                                delta = AutoDelta(
                                    role=None if index in begun else "assistant",
                                    content=content or None,
                                    tool_calls=event.tool_calls,
                                )
                                begun.add(index)
                                yield writer.delta(delta, index, event.logprobs)
                            case RouteEvent() | StepEvent():
                                # Progress of the pipeline, for the UI; OpenAI clients ignore it.
                                yield writer.progress(event)
                            case DoneEvent():
                                await self._record(_message_id(event.id))
                                streamed = "".join(first_text)
                                async for piece in _finish(
                                    body, writer, event, meter, streamed, include_usage
                                ):
                                    yield piece
                            case ErrorEvent():
                                yield _sse({"error": event.error.model_dump()})
                except httpx.HTTPError:
                    yield _broken_stream("router_svc")
                yield _sse("[DONE]")

        # The end also closes the upstream when the client left before the stream's first byte.
        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
            background=_end_of_stream(request, stack, meter, self.limiter),
        )

    async def _moe_stream(
        self, request: Request, body: GatewayChatRequest, raw: dict[str, Any]
    ) -> StreamingResponse:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        options = raw.get("stream_options")
        asked = options if isinstance(options, dict) else {}
        route = self.models.route(str(raw.get("model") or ""))
        payload = route.request_body({**raw, "stream_options": {**asked, "include_usage": True}})
        stack = AsyncExitStack()
        async with upstream_timer():
            # Opened before the response starts: the server's 4xx/5xx reach the caller as is.
            upstream = await stack.enter_async_context(
                route.client.stream(
                    "POST", "/v1/chat/completions", json=payload, timeout_s=self.timeout_s
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
                    yield _broken_stream(route.upstream)

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers=SSE_HEADERS,
            background=_end_of_stream(request, stack, meter, self.limiter),
        )

    async def _moe(self, request: Request, raw: dict[str, Any]) -> Response:
        # The server's answer passes as it came (moe_svc's `experts` and `token_ids` included).
        route = self.models.route(str(raw.get("model") or ""))
        async with upstream_timer():
            result = await route.client.post_json(
                "/v1/chat/completions", route.request_body(raw), timeout_s=self.timeout_s
            )
        tokens = int((result.get("usage") or {}).get("completion_tokens", 0))
        return JSONResponse(result, background=self._charge(request, tokens))
