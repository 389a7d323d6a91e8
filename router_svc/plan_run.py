"""One dispatch while its plan runs: the routed request, what the steps found, the step log.

The step runners (`router_svc.step_runners`) read the request from a
`PlanRun` and leave their findings on it (the memory context, the answer,
sources, tool calls, images...); `PlanRun.pipeline` reports them once the
plan is done. When the caller streams, `say` sends pieces of the answer and
every recorded step goes out as an event the moment it finishes.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from common.contracts.dispatch_events import DeltaEvent, DispatchEvent, StepEvent
from common.contracts.memory import ContextMessage
from common.contracts.openai import ChatChoice, ExpertUsage, FinishReason
from common.contracts.rag import Attribution, Citation
from common.contracts.router import (
    DispatchRequest,
    Pipeline,
    PipelineImage,
    PipelineStep,
    PipelineToolCall,
    ReasoningReport,
    RouteResponse,
    Source,
)
from router_svc.backends import Backends
from router_svc.conversation import Conversation
from router_svc.settings import RouterSettings
from router_svc.step_log import StepLog, TurnBudget

__all__ = ["Emit", "PlanRun", "Prepared"]

# Sends one server-sent event to a streaming caller.
Emit = Callable[[DispatchEvent], Awaitable[None]]


@dataclass
class Prepared:
    """A checked and routed request, ready to run."""

    request: DispatchRequest
    conversation: Conversation
    route: RouteResponse
    id: str = field(default_factory=lambda: f"dsp-{uuid.uuid4().hex[:24]}")


class PlanRun:
    """The state of one dispatch while its plan runs."""

    def __init__(
        self,
        settings: RouterSettings,
        backends: Backends,
        prepared: Prepared,
        emit: Emit | None,
    ) -> None:
        self.settings = settings
        self.backends = backends
        self.id = prepared.id
        self.request = prepared.request
        self.conversation = prepared.conversation
        self.route = prepared.route
        self.emit = emit
        budget = TurnBudget(settings.turn_timeout_s, settings.fallback_reserve_s)
        self.log = StepLog(on_step=self._on_step, budget=budget)
        self.notes: list[str] = []
        # The session's context from memory_svc; None without one (or when memory failed).
        self.context: list[ContextMessage] | None = None
        # The answer, from whichever step wrote it; None until one has.
        self.answer: str | None = None
        # Why the answer ended, as OpenAI says it ("length": cut by max_tokens).
        self.finish_reason: FinishReason = "stop"
        # The core model's own choices (n, tool calls, logprobs) when it wrote the answer.
        self.choices: list[ChatChoice] | None = None
        self.sourced: bool | None = None
        self.sources: list[Source] = []
        self.citations: list[Citation] = []
        self.attribution: Attribution | None = None
        self.tool_calls: list[PipelineToolCall] = []
        self.reasoning: ReasoningReport | None = None
        self.images: list[PipelineImage] = []
        self.model: str | None = None
        # moe_svc's experts per layer for the answer the core model wrote (UI heatmap).
        self.experts: ExpertUsage | None = None

    async def _on_step(self, step: PipelineStep) -> None:
        if self.emit is not None:
            await self.emit(StepEvent(step=step))

    async def say(self, text: str) -> None:
        """Send a piece of the answer to a streaming caller."""
        if self.emit is not None and text:
            await self.emit(DeltaEvent(content=text))

    async def say_delta(self, delta: DeltaEvent) -> None:
        """Send a piece of one of the core model's choices (text, tool calls, logprobs, end)."""
        if self.emit is not None:
            await self.emit(delta)

    def pipeline(self, latency_ms: float) -> Pipeline:
        """What ran and what it found, for the caller."""
        route = self.route
        return Pipeline(
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
            attribution=self.attribution,
            tool_calls=self.tool_calls,
            reasoning=self.reasoning,
            images=self.images,
            notes=self.notes,
            model=self.model,
            experts=self.experts,
            latency_ms=latency_ms,
        )
