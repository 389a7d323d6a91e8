"""OpenAI chat and text completions on top of the engine (the logic behind the routes).

A request becomes `n` engine requests sharing one output queue. Non-streamed,
the deltas are collected into one response; streamed, each delta becomes a
server-sent event as soon as it arrives. A full queue, or a request shed from it
for waiting too long, answers 503 `overloaded` with `Retry-After`; a stream waits
for its first token before its 200 goes out, so that a shed stream gets that 503
too (only a choice of `n > 1` shed after another began ends in an SSE error event).
Either way, a client that goes away
aborts its sequences so that their batch rows serve others (the routes cancel
a non-streamed request whose client left; see `common.disconnect`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from common.contracts.openai import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessage,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    DeltaMessage,
    ExpertUsage,
    FinishReason,
    SamplingFields,
    Usage,
)
from common.errors import OVERLOADED, BadRequest, NotFound, Overloaded, ServiceError
from common.streaming import SSE_HEADERS
from moe_svc.engine import (
    Delta,
    Engine,
    GenerationRequest,
    QueueFull,
    SampledToken,
    SamplingParams,
)
from moe_svc.loader import LoadedModel
from moe_svc.logprob_format import LogprobFormatter
from moe_svc.sse_events import error_event, event
from moe_svc.structured import (
    ChatConstraint,
    GrammarCompiler,
    GrammarError,
    chat_constraint,
    prompt_messages,
    refuse_unsupported,
)
from moe_svc.tool_replies import ToolReply
from moe_svc.vision.prompt import IMAGE_MARK, ImagePrompt, encode
from moe_svc.vision.seeing import Vision

__all__ = ["ModelServer"]

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # as OpenAI's legacy completions


@dataclass
class _Outputs:
    """What the choices of one request produced."""

    texts: list[str]
    finish: list[str | None]
    completion_tokens: list[int]
    experts: list[list[list[int]] | None] = field(default_factory=list)
    token_ids: list[list[int]] = field(default_factory=list)
    logprobs: list[list[SampledToken]] = field(default_factory=list)

    @classmethod
    def empty(cls, n: int) -> _Outputs:
        return cls(
            [""] * n,
            [None] * n,
            [0] * n,
            [None] * n,
            [[] for _ in range(n)],
            [[] for _ in range(n)],
        )


class ModelServer:
    def __init__(
        self,
        loaded: LoadedModel,
        engine: Engine,
        default_max_tokens: int,
        grammars: GrammarCompiler,
        vision: Vision | None = None,
    ) -> None:
        self.loaded = loaded
        self.engine = engine
        self.default_max_tokens = default_max_tokens
        self.grammars = grammars
        self.vision = vision  # None: this model does not see images
        self.logprobs = LogprobFormatter(grammars.tokenizer.decode_bytes)
        # The model version this server is (None: the base model; `moe_svc.model_pool`).
        self.version: str | None = None

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def max_context(self) -> int:
        return self.engine.config.max_context

    # ---- request checks ----

    def check_model(self, model: str) -> None:
        if model != self.name:
            raise NotFound(
                f"The model '{model}' does not exist; this server serves '{self.name}'.",
                param="model",
                code="model_not_found",
            )

    def chat_prompt(
        self, body: ChatCompletionRequest, constraint: ChatConstraint, images: int = 0
    ) -> ImagePrompt:
        """The prompt's token ids, with `tokens_per_image` slots where each image stands."""
        messages = prompt_messages(body.messages)
        try:
            text = self.loaded.template.render(
                messages, body.add_generation_prompt, constraint.tools
            )
        except ValueError as exc:
            raise BadRequest(f"Chat template error: {exc}", param="messages") from None
        if not images:
            return ImagePrompt(self.loaded.tokenizer.encode(text), [])
        assert self.vision is not None
        if text.count(IMAGE_MARK) != images:  # the template dropped a message's content
            raise BadRequest(
                "The chat template does not place every image of the conversation; "
                "send images in user messages.",
                param="messages",
                code="invalid_image",
            )
        return encode(self.loaded.tokenizer, text, self.vision.tokens_per_image)

    def sampling_params(
        self,
        body: SamplingFields,
        prompt_len: int,
        max_tokens: int | None,
        prompt_param: str,
        logprobs: int | None = None,
    ) -> SamplingParams:
        """Engine parameters; a 400 when the prompt plus max_tokens overflow the context."""
        room = self.max_context - prompt_len
        if room < 1:
            raise BadRequest(
                f"This model's maximum context length is {self.max_context} tokens; "
                f"the prompt has {prompt_len}.",
                param=prompt_param,
                code="context_length_exceeded",
            )
        if max_tokens is None:
            max_tokens = min(self.default_max_tokens, room)
        elif max_tokens > room:
            raise BadRequest(
                f"This model's maximum context length is {self.max_context} tokens; "
                f"the prompt has {prompt_len} and max_tokens asks for {max_tokens} more.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        temperature = 1.0 if body.temperature is None else body.temperature
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=1.0 if body.top_p is None else body.top_p,
            top_k=body.top_k or 0,
            seed=body.seed,
            stop=tuple(body.stop_list()),
            stop_token_ids=frozenset() if body.ignore_eos else self.loaded.stop_token_ids,
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            repetition_penalty=body.repetition_penalty,
            logprobs=logprobs,
        )

    # ---- running requests ----

    def _submit(
        self,
        prompt: list[int],
        params: SamplingParams,
        n: int,
        record_experts: bool,
        grammar: tuple[str, str] | None = None,
        image_embeds: list[tuple[int, torch.Tensor]] | None = None,
    ) -> list[GenerationRequest]:
        """n engine requests; grammar: (grammar text, the field it came from) to constrain;
        image_embeds: (prompt position, vectors) of each image."""
        constraints = []
        if grammar is not None:
            try:
                constraints = [self.grammars.state(grammar[0]) for _ in range(n)]
            except GrammarError as exc:
                raise BadRequest(
                    f"The grammar cannot be compiled: {exc}",
                    param=grammar[1],
                    code="invalid_grammar",
                ) from None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Delta] = asyncio.Queue()
        requests = []
        for index in range(n):
            # choices of one seeded request differ from each other but repeat across calls
            seed = None if params.seed is None else params.seed + index
            choice_params = params if index == 0 else _with_seed(params, seed)
            requests.append(
                GenerationRequest(
                    prompt,
                    choice_params,
                    loop,
                    record_experts,
                    constraint=constraints[index] if constraints else None,
                    image_embeds=image_embeds or [],
                    index=index,
                    queue=queue,
                )
            )
        try:
            for request in requests:
                self.engine.submit(request)
        except QueueFull as exc:
            for request in requests:
                self.engine.abort(request)
            raise Overloaded(
                f"The server is overloaded: {exc}, as many as its queue holds. Retry later.",
                retry_after_s=exc.retry_after_s,
            ) from None
        return requests

    async def _see(self, body: ChatCompletionRequest) -> list[torch.Tensor]:
        """Each image part of the conversation as its (tokens_per_image, C) vectors."""
        if not any(message.images() for message in body.messages):
            return []
        if self.vision is None:
            raise BadRequest(
                f"The model '{self.name}' does not accept images; send text only, or ask "
                "GET /v1/models for a model whose input_modalities include image.",
                param="messages",
                code="images_not_supported",
            )
        return await self.vision.see(body.messages)

    def _abort(self, requests: list[GenerationRequest]) -> None:
        for request in requests:
            self.engine.abort(request)

    async def _collect(self, requests: list[GenerationRequest]) -> _Outputs:
        n = len(requests)
        out = _Outputs.empty(n)
        queue = requests[0].queue
        pending = n
        try:
            while pending:
                delta = await queue.get()
                _raise_engine_error(delta)
                i = delta.index
                out.texts[i] += delta.text
                out.token_ids[i] = requests[i].output_ids
                out.logprobs[i].extend(delta.logprobs or [])
                if delta.finish_reason is not None:
                    pending -= 1
                    out.finish[i] = delta.finish_reason
                    out.completion_tokens[i] = delta.completion_tokens
                    out.experts[i] = delta.experts
        finally:
            # also when the route cancels this because the client left
            self._abort(requests)
        return out

    async def _started(self, requests: list[GenerationRequest]) -> Delta:
        """The first delta of a stream: its request left the queue and was prefilled.

        Awaited before the stream's 200, so that a request shed from the queue (or
        failed in its prefill) answers in the error shape with its status.
        """
        try:
            delta = await requests[0].queue.get()
            _raise_engine_error(delta)
        except BaseException:  # the error, or the route cancelled this (client gone)
            self._abort(requests)
            raise
        return delta

    async def _stream(
        self,
        requests: list[GenerationRequest],
        started: Delta,
        first: Callable[[int], BaseModel | None],
        piece: Callable[[Delta], BaseModel | None],
        usage: Callable[[_Outputs], BaseModel | None],
    ) -> AsyncIterator[str]:
        """SSE events: an opening event per choice, one per delta, usage, `[DONE]`.

        `started` is the first delta, already taken from the queue.
        """
        n = len(requests)
        out = _Outputs.empty(n)
        queue = requests[0].queue
        held: Delta | None = started
        try:
            for index in range(n):
                if (opening := first(index)) is not None:
                    yield event(opening)
            pending = n
            while pending:
                if held is not None:
                    delta, held = held, None
                else:
                    delta = await queue.get()
                if delta.error is not None:
                    code = "engine_error" if delta.retry_after_s is None else OVERLOADED
                    yield f"data: {error_event(delta.error, code)}\n\n"
                    return
                if delta.finish_reason is not None:
                    pending -= 1
                    out.completion_tokens[delta.index] = delta.completion_tokens
                    out.experts[delta.index] = delta.experts
                if (update := piece(delta)) is not None:
                    yield event(update)
            if (last := usage(out)) is not None:
                yield event(last)
            yield "data: [DONE]\n\n"
        finally:
            # also on client disconnect: Starlette cancels this generator
            self._abort(requests)

    def _streaming_response(
        self, requests: list[GenerationRequest], events: AsyncIterator[str]
    ) -> StreamingResponse:
        # A generator cancelled while it waits on the client is not closed at once, so
        # its `finally` may come late: the response's end aborts the rows as well.
        return StreamingResponse(
            events,
            media_type="text/event-stream",
            headers=SSE_HEADERS,
            background=BackgroundTask(self._abort, requests),
        )

    # ---- chat completions ----

    async def chat(self, body: ChatCompletionRequest) -> ChatCompletionResponse | StreamingResponse:
        self.check_model(body.model)
        refuse_unsupported(body)
        constraint = chat_constraint(body)
        pictures = await self._see(body)
        image_prompt = self.chat_prompt(body, constraint, len(pictures))
        prompt = image_prompt.ids
        max_tokens = body.max_completion_tokens or body.max_tokens
        top = (body.top_logprobs or 0) if body.logprobs else None
        params = self.sampling_params(body, len(prompt), max_tokens, "messages", top)
        grammar = None if constraint.grammar is None else (constraint.grammar, constraint.param)
        embeds = list(zip(image_prompt.image_starts, pictures, strict=True))
        requests = self._submit(prompt, params, body.n, body.return_experts, grammar, embeds)
        head = _head(f"chatcmpl-{uuid.uuid4().hex}", self.name)
        if body.stream:
            started = await self._started(requests)
            events = self._chat_events(body, constraint, len(prompt), requests, started, head)
            return self._streaming_response(requests, events)
        out = await self._collect(requests)
        choices = []
        for i, (text, reason) in enumerate(zip(out.texts, out.finish, strict=True)):
            message = ChatMessage(content=text)
            if constraint.may_call:
                reply = ToolReply()
                reply.feed(text)
                if reply.is_call and (calls := reply.tool_calls()) and reason == "stop":
                    message, reason = ChatMessage(content=None, tool_calls=calls), "tool_calls"
            logprobs = self.logprobs.chat(out.logprobs[i]) if params.logprobs is not None else None
            choices.append(
                ChatChoice(
                    index=i,
                    message=message,
                    finish_reason=reason,
                    logprobs=logprobs,
                    token_ids=list(out.token_ids[i]) if body.return_token_ids else None,
                )
            )
        return ChatCompletionResponse(
            **head,
            choices=choices,
            usage=_usage(len(prompt), out),
            experts=_experts(out) if body.return_experts else None,
        )

    def _chat_events(
        self,
        body: ChatCompletionRequest,
        constraint: ChatConstraint,
        prompt_tokens: int,
        requests: list[GenerationRequest],
        started: Delta,
        head: dict[str, Any],
    ) -> AsyncIterator[str]:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        replies = [ToolReply() if constraint.may_call else None for _ in requests]

        def chunk(index: int, delta: DeltaMessage, **fields: Any) -> ChatCompletionChunk:
            choice = ChatChunkChoice(index=index, delta=delta, **fields)
            return ChatCompletionChunk(**head, choices=[choice])

        def first(index: int) -> ChatCompletionChunk:
            return chunk(index, DeltaMessage(role="assistant", content=""))

        def piece(delta: Delta) -> ChatCompletionChunk | None:
            text, calls = delta.text, None
            reason: FinishReason | None = delta.finish_reason
            if (reply := replies[delta.index]) is not None:
                text, tool_deltas = reply.feed(delta.text)
                if reason is not None:
                    text += reply.finish()
                    if reply.is_call and reason == "stop":
                        reason = "tool_calls"
                calls = tool_deltas or None
            logprobs = None
            if delta.logprobs:
                logprobs = self.logprobs.chat(delta.logprobs)
            if not text and calls is None and reason is None and logprobs is None:
                return None  # held back: it may open a tool call
            message = DeltaMessage(content=text or None, tool_calls=calls)
            return chunk(delta.index, message, finish_reason=reason, logprobs=logprobs)

        def usage(out: _Outputs) -> ChatCompletionChunk | None:
            experts = _experts(out) if body.return_experts else None
            if not include_usage and experts is None:
                return None
            return ChatCompletionChunk(
                **head,
                choices=[],
                usage=_usage(prompt_tokens, out) if include_usage else None,
                experts=experts,
            )

        return self._stream(requests, started, first, piece, usage)

    # ---- text completions ----

    async def completion(self, body: CompletionRequest) -> CompletionResponse | StreamingResponse:
        self.check_model(body.model)
        _refuse_unsupported_completion(body)
        tokenizer = self.loaded.tokenizer
        if isinstance(body.prompt, str):
            prompt, prompt_text = tokenizer.encode(body.prompt), body.prompt
        else:
            vocab = self.loaded.model.config.vocab_size
            if any(not 0 <= t < vocab for t in body.prompt):
                raise BadRequest(f"Token ids must be in [0, {vocab}).", param="prompt")
            prompt, prompt_text = body.prompt, tokenizer.decode(body.prompt)
        if not prompt:
            raise BadRequest("The prompt encodes to no tokens.", param="prompt")
        max_tokens = body.max_tokens or COMPLETIONS_DEFAULT_MAX_TOKENS
        params = self.sampling_params(body, len(prompt), max_tokens, "prompt", body.logprobs)
        requests = self._submit(prompt, params, body.n, body.return_experts)
        head = _head(f"cmpl-{uuid.uuid4().hex}", self.name)
        echo = prompt_text if body.echo else ""
        if body.stream:
            started = await self._started(requests)
            include_usage = bool(body.stream_options and body.stream_options.include_usage)

            def first(index: int) -> CompletionResponse | None:
                if not echo:
                    return None
                choice = CompletionChoice(index=index, text=echo, finish_reason=None)
                return CompletionResponse(**head, choices=[choice])

            offsets = [len(echo)] * body.n

            def piece(delta: Delta) -> CompletionResponse:
                logprobs = None
                if delta.logprobs is not None:
                    logprobs = self.logprobs.completion(delta.logprobs, offsets[delta.index])
                    offsets[delta.index] += sum(len(t) for t in logprobs.tokens)
                choice = CompletionChoice(
                    index=delta.index,
                    text=delta.text,
                    finish_reason=delta.finish_reason,
                    logprobs=logprobs,
                )
                return CompletionResponse(**head, choices=[choice])

            def usage(out: _Outputs) -> CompletionResponse | None:
                experts = _experts(out) if body.return_experts else None
                if not include_usage and experts is None:
                    return None
                return CompletionResponse(
                    **head,
                    choices=[],
                    usage=_usage(len(prompt), out) if include_usage else None,
                    experts=experts,
                )

            events = self._stream(requests, started, first, piece, usage)
            return self._streaming_response(requests, events)
        out = await self._collect(requests)
        choices = [
            CompletionChoice(
                index=i,
                text=echo + text,
                finish_reason=reason,
                logprobs=(
                    self.logprobs.completion(out.logprobs[i], len(echo))
                    if body.logprobs is not None
                    else None
                ),
                token_ids=list(out.token_ids[i]) if body.return_token_ids else None,
            )
            for i, (text, reason) in enumerate(zip(out.texts, out.finish, strict=True))
        ]
        return CompletionResponse(
            **head,
            choices=choices,
            usage=_usage(len(prompt), out),
            experts=_experts(out) if body.return_experts else None,
        )


def _head(rid: str, model: str) -> dict[str, Any]:
    """The fields every response and chunk of one request repeat."""
    return {"id": rid, "created": int(time.time()), "model": model}


def _with_seed(params: SamplingParams, seed: int | None) -> SamplingParams:
    return replace(params, seed=seed)


def _refuse_unsupported_completion(body: CompletionRequest) -> None:
    """400 for legacy completion fields this server does not implement."""
    if body.logit_bias:
        raise BadRequest("'logit_bias' is not supported by this server.", param="logit_bias")
    if body.suffix:
        raise BadRequest("'suffix' is not supported by this server.", param="suffix")
    if body.best_of is not None and body.best_of != body.n:
        raise BadRequest("'best_of' other than n is not supported.", param="best_of")


def _raise_engine_error(delta: Delta) -> None:
    if delta.error is None:
        return
    if delta.retry_after_s is not None:  # shed from the queue
        raise Overloaded(delta.error, retry_after_s=delta.retry_after_s)
    raise ServiceError(delta.error, code="engine_error")


def _usage(prompt_tokens: int, out: _Outputs) -> Usage:
    completion = sum(out.completion_tokens)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        total_tokens=prompt_tokens + completion,
    )


def _experts(out: _Outputs) -> list[ExpertUsage]:
    return [ExpertUsage(per_layer=e or []) for e in out.experts]
