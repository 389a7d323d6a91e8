"""`POST /v1/dispatch`'s logic: route the turn, run its plan, answer, remember.

`Dispatcher.prepare` checks the request and classifies it (so bad input is a
4xx before any stream starts); `Dispatcher.execute` runs the plan. Steps
without a common ancestor run concurrently (the memory branch next to
retrieval, ideation or a tool call); each step's latency and outcome go to
the pipeline, and, when streaming, out as events the moment they finish.
Optional steps that fail degrade the answer and say so in `notes`; a failed
required step fails the dispatch with the upstream's error.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from common.caller import TOOL_SCOPES, current_caller
from common.contracts.memory import ContextMessage
from common.contracts.router import (
    AssistantMessage,
    ChatMessage,
    DispatchRequest,
    DispatchResponse,
    Pipeline,
    PipelineStep,
    RouteResponse,
    Source,
)
from common.errors import ServiceError
from router_svc.backends import Backends
from router_svc.conversation import (
    TEMPERATURES,
    AnswerMode,
    Conversation,
    compose_ideas,
    model_messages,
    parse_conversation,
    reasoning_context,
)
from router_svc.direct_tools import DirectCall, format_tool_answer
from router_svc.plans import is_visual
from router_svc.routing import Router
from router_svc.settings import RouterSettings
from router_svc.steps import StepLog

__all__ = ["Dispatcher", "Emit", "Prepared"]

Emit = Callable[[dict[str, Any]], Awaitable[None]]
PYTHON_SCOPE = TOOL_SCOPES["python"]
UNSOURCED_NOTE = (
    "(Not from the document base: retrieval was unavailable, so this answer has no sources.)"
)


@dataclass
class Prepared:
    request: DispatchRequest
    conversation: Conversation
    route: RouteResponse
    id: str = field(default_factory=lambda: f"dsp-{uuid.uuid4().hex[:24]}")


class _Job:
    """The state of one dispatch while its plan runs."""

    def __init__(self, owner: Dispatcher, prepared: Prepared, emit: Emit | None) -> None:
        self.s = owner.settings
        self.backends = owner.backends
        self.p = prepared
        self.request = prepared.request
        self.conversation = prepared.conversation
        self.emit = emit
        self.log = StepLog(on_step=self._on_step)
        self.notes: list[str] = []
        self.sourced: bool | None = None
        self.sources: list[Source] = []
        self.citations: list[dict[str, Any]] = []
        self.tool_calls: list[dict[str, Any]] = []
        self.reasoning: dict[str, Any] | None = None
        self.images: list[dict[str, Any]] = []
        self.model: str | None = None
        # moe_svc's experts per layer for the answer the core model wrote (UI heatmap).
        self.experts: dict[str, Any] | None = None

    async def _on_step(self, step: PipelineStep) -> None:
        if self.emit is not None:
            await self.emit({"type": "step", "step": step.model_dump(mode="json")})

    async def say(self, text: str) -> None:
        """Send a piece of the answer to a streaming caller."""
        if self.emit is not None and text:
            await self.emit({"type": "delta", "content": text})

    # --- memory ----------------------------------------------------------------------------

    async def memory_branch(self) -> list[ContextMessage] | None:
        """Store the user's turn, then read the session's context (None without one)."""
        sid = self.request.session_id
        if sid is None:
            await self.log.skip("memory.write_user", "memory_svc", "no session_id")
            await self.log.skip("memory.context", "memory_svc", "no session_id")
            return None
        timeout = self.s.memory_timeout_s
        message = {"role": "user", "content": self.conversation.text, "id": f"{self.p.id}-user"}
        written = await self.log.run(
            "memory.write_user",
            "memory_svc",
            self.backends.append_messages(sid, [message], self.request.user, timeout),
            optional=True,
            timeout_s=timeout,
        )
        if written is None:
            await self.log.skip("memory.context", "memory_svc", "memory.write_user failed")
            self.notes.append("Memory was unavailable: this turn is not stored.")
            return None
        context = await self.log.run(
            "memory.context",
            "memory_svc",
            self.backends.context(sid, self.s.context_budget_tokens, None, timeout),
            optional=True,
            timeout_s=timeout,
            detail=lambda c: {
                "messages": len(c.messages),
                "total_tokens": c.total_tokens,
                "dropped": c.dropped,
                "summary": c.summary is not None,
            },
        )
        if context is None:
            self.notes.append("Memory was unavailable: answered without the stored conversation.")
            return None
        return context.messages

    async def remember(self, answer: str) -> None:
        sid = self.request.session_id
        if sid is None:
            await self.log.skip("memory.write_assistant", "memory_svc", "no session_id")
            return
        if self.log.status("memory.write_user") != "ok":
            # An answer without its question would garble the history; memory is unwell anyway.
            await self.log.skip("memory.write_assistant", "memory_svc", "memory.write_user failed")
            return
        route = self.p.route
        message = {
            "role": "assistant",
            "content": answer,
            "id": f"{self.p.id}-assistant",
            "metadata": {"intent": route.intent, "dispatch_id": self.p.id},
        }
        timeout = self.s.memory_timeout_s
        await self.log.run(
            "memory.write_assistant",
            "memory_svc",
            self.backends.append_messages(sid, [message], self.request.user, timeout),
            optional=True,
            timeout_s=timeout,
        )

    # --- answers -----------------------------------------------------------------------------

    async def model_answer(self, mode: AnswerMode, context: list[ContextMessage] | None) -> str:
        """moe_svc's answer (streamed to the caller when streaming); a required step."""
        options = self.request.options
        messages = model_messages(mode, self.conversation, context)
        temperature = options.temperature
        if temperature is None:
            temperature = self.s.creative_temperature if mode == "creative" else TEMPERATURES[mode]
        kwargs: dict[str, Any] = {
            "model": options.model or None,
            "temperature": temperature,
            "max_tokens": options.max_tokens or self.s.max_answer_tokens,
            "timeout_s": self.s.model_timeout_s,
            "on_experts": self._keep_experts,
        }

        async def streamed() -> tuple[str, str]:
            pieces: list[str] = []
            async for piece in self.backends.chat_stream(messages, **kwargs):
                pieces.append(piece)
                await self.say(piece)
            return "".join(pieces), kwargs["model"] or await self.backends.model(5.0)

        call = streamed() if self.emit is not None else self.backends.chat(messages, **kwargs)
        result = await self.log.run(
            "moe.answer",
            "moe_svc",
            call,
            optional=False,
            timeout_s=self.s.model_timeout_s,
            detail=lambda r: {"mode": mode, "chars": len(r[0])},
        )
        assert result is not None
        text, self.model = result
        return text.strip()

    def _keep_experts(self, experts: dict[str, Any]) -> None:
        self.experts = experts

    async def factual(self) -> str:
        memory = asyncio.create_task(self.memory_branch())
        options = self.request.options
        collection = options.collection or self.s.rag_collection
        rag = await self.log.run(
            "rag.answer",
            "rag_svc",
            self.backends.rag_answer(
                collection,
                self.conversation.text,
                options.k or self.s.rag_k,
                self.s.rag_timeout_s,
                options.max_tokens,
            ),
            optional=True,
            timeout_s=self.s.rag_timeout_s,
            detail=lambda r: {"sources": len(r.sources), "verified": r.verified},
        )
        context = await memory
        if rag is not None and rag.answer.strip():
            self.sourced = bool(rag.sources)
            self.sources = [Source.model_validate(s.model_dump()) for s in rag.sources]
            self.citations = [c.model_dump() for c in rag.citations]
            self.model = rag.model
            if not rag.sources:
                self.notes.append("No document matched: the answer is not based on sources.")
            await self.say(rag.answer)
            return rag.answer
        self.sourced = False
        why = "it answered with nothing" if rag is not None else "it failed or was too slow"
        self.notes.append(f"Retrieval was unavailable ({why}): answered without sources.")
        answer = await self.model_answer("unsourced", context)
        await self.say(f"\n\n{UNSOURCED_NOTE}")
        return f"{answer}\n\n{UNSOURCED_NOTE}"

    async def reason(
        self, strategy: str, context: list[ContextMessage] | None, *, optional: bool
    ) -> str | None:
        payload: dict[str, Any] = {
            "question": self.conversation.text,
            "strategy": strategy,
            "context": reasoning_context(self.conversation, context),
        }
        if self.request.options.model:
            payload["model"] = self.request.options.model
        if self.request.options.max_tokens:
            # The caller's bound on the answer bounds every token the strategy writes.
            payload["max_total_tokens"] = self.request.options.max_tokens
        result = await self.log.run(
            "reasoning.reason",
            "reasoning_svc",
            self.backends.reason(payload, self.s.reasoning_timeout_s),
            optional=optional,
            timeout_s=self.s.reasoning_timeout_s,
            detail=lambda r: {
                "strategy": r.strategy,
                "model_calls": r.usage.model_calls,
                "finished": r.finished,
            },
        )
        if result is None or not result.answer.strip():
            return None
        self.reasoning = result.model_dump(
            include={
                "strategy",
                "requested_strategy",
                "finished",
                "stop_reason",
                "trace",
                "usage",
                "votes",
                "model",
                "latency_ms",
            }
        )
        self.tool_calls = [c.model_dump() for c in result.tool_calls]
        self.model = result.model
        if not result.finished:
            self.notes.append(f"Reasoning stopped before it was sure ({result.stop_reason}).")
        await self.say(result.answer)
        return result.answer

    async def reasoning_intent(self) -> str:
        context = await self.memory_branch()
        strategy = self.request.options.strategy or "auto"
        answer = await self.reason(strategy, context, optional=True)
        if answer is not None:
            return answer
        self.notes.append("reasoning_svc was unavailable: the model answered directly.")
        return await self.model_answer("direct", context)

    async def creative(self) -> str:
        if not is_visual(self.conversation.text):
            return await self.model_answer("creative", await self.memory_branch())
        memory = asyncio.create_task(self.memory_branch())
        n = self.request.options.n_images or 1
        ideas = await self.log.run(
            "creative.ideate",
            "creative_svc",
            self.backends.ideate(self.conversation.text, n, self.s.creative_timeout_s),
            optional=True,
            timeout_s=self.s.creative_timeout_s,
            detail=lambda b: {"ideas": len(b.get("ideas") or [])},
        )
        context = await memory
        if ideas is not None:
            answer, self.images = compose_ideas(ideas)
            await self.say(answer)
            return answer
        self.notes.append("Image generation was unavailable: here is a description instead.")
        return await self.model_answer("describe", context)

    async def tool(self) -> str:
        planned = {s.name: s for s in self.p.route.plan.steps}
        if "moe.answer" in planned:
            # Code to explain, review or fix, not to run: the model answers.
            return await self.model_answer("chat", await self.memory_branch())
        step = planned.get("tools.invoke")
        if step is None:
            answer = await self.reason("react", await self.memory_branch(), optional=False)
            return answer or ""
        call = DirectCall(step.arguments["tool"], step.arguments["arguments"])
        if call.tool == "python" and not current_caller().allows(PYTHON_SCOPE):
            return await self.refuse_python()
        memory = asyncio.create_task(self.memory_branch())
        result = await self.log.run(
            "tools.invoke",
            "tools_svc",
            self.backends.invoke_tool(call.tool, call.arguments, self.s.tool_timeout_s),
            optional=True,
            timeout_s=self.s.tool_timeout_s,
            detail=lambda r: {"tool": r.tool, "error": r.error},
        )
        context = await memory
        # A snippet that raises is still the answer to "run this"; other tools' errors are not.
        usable = result is not None and (result.error is None or call.tool == "python")
        if result is not None and usable:
            record = {"tool": call.tool, "arguments": call.arguments, **result.model_dump()}
            self.tool_calls = [record]
            answer = format_tool_answer(call, result.output)
            await self.say(answer)
            return answer
        why = result.error if result is not None else "the call failed"
        self.notes.append(f"The direct {call.tool} call did not work ({why}); the agent took over.")
        return await self.reason("react", context, optional=False) or ""

    async def refuse_python(self) -> str:
        """The answer to a request to run code from a key that may not run any."""
        await self.log.skip("tools.invoke", "tools_svc", f"the key lacks the {PYTHON_SCOPE} scope")
        await self.memory_branch()
        answer = (
            f"This API key does not have the '{PYTHON_SCOPE}' scope, so the code was not run. "
            "An admin can grant the scope to the key; I can explain the code instead if you ask."
        )
        self.notes.append(f"Code was not run: the key lacks the '{PYTHON_SCOPE}' scope.")
        await self.say(answer)
        return answer

    async def run(self) -> DispatchResponse:
        started = time.perf_counter()
        route = self.p.route
        if self.emit is not None:
            await self.emit({"type": "route", **route.model_dump(mode="json")})
        if route.reason and route.fallback:
            self.notes.append(route.reason)
        if route.fallback:
            answer = await self.model_answer("general", await self.memory_branch())
        elif route.intent == "factual":
            answer = await self.factual()
        elif route.intent == "reasoning":
            answer = await self.reasoning_intent()
        elif route.intent == "creative":
            answer = await self.creative()
        elif route.intent == "tool":
            answer = await self.tool()
        else:
            answer = await self.model_answer("chat", await self.memory_branch())
        await self.remember(answer)
        ran = {s.name for s in self.log.steps}
        for planned in route.plan.steps:
            if planned.name not in ran:
                reason = f"not needed ({planned.when} did not happen)" if planned.when else None
                await self.log.skip(planned.name, planned.service, reason or "not needed")
        pipeline = Pipeline(
            intent=route.intent,
            confidence=route.confidence,
            scores=route.scores,
            fallback=route.fallback,
            context_used=route.context_used,
            plan=route.plan,
            steps=self.log.steps,
            sourced=self.sourced,
            sources=self.sources,
            citations=self.citations,
            tool_calls=self.tool_calls,
            reasoning=self.reasoning,
            images=self.images,
            notes=self.notes,
            model=self.model,
            experts=self.experts,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return DispatchResponse(
            id=self.p.id,
            session_id=self.request.session_id,
            message=AssistantMessage(content=answer),
            pipeline=pipeline,
        )


class Dispatcher:
    def __init__(self, settings: RouterSettings, router: Router, backends: Backends) -> None:
        self.settings = settings
        self.router = router
        self.backends = backends

    async def prepare(self, request: DispatchRequest) -> Prepared:
        """Check the request and route its last turn (4xx here, before any answer starts)."""
        conversation = parse_conversation(request, self.settings)
        options = request.options
        history = conversation.history[-self.settings.max_history_messages :]
        if not history and options.intent is None:
            history = await self._stored_turns(request.session_id, conversation.text)
        route = await asyncio.to_thread(
            self.router.route,
            conversation.text,
            history,
            forced_intent=options.intent,
            strategy=options.strategy,
        )
        return Prepared(request, conversation, route)

    async def _stored_turns(self, session_id: str | None, text: str) -> list[ChatMessage]:
        """The session's last turns from memory_svc, for a short follow-up sent alone.

        Clients that keep the conversation in a session send only the new turn;
        "and in Celsius?" still needs the one before it. Best effort: no
        history when memory_svc is slow or down.
        """
        if session_id is None or not self.router.classifier.is_follow_up(text):
            return []
        timeout = self.settings.memory_timeout_s
        try:
            async with asyncio.timeout(timeout):
                turns = await self.backends.recent_messages(session_id, 4, timeout)
        except (TimeoutError, ServiceError):
            return []
        return [ChatMessage(role=role, content=content) for role, content in turns]

    async def execute(self, prepared: Prepared, emit: Emit | None = None) -> DispatchResponse:
        """Run the plan; a failed required step raises its upstream's `ServiceError`."""
        return await _Job(self, prepared, emit).run()
