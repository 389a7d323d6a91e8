"""`POST /v1/reason`'s logic: check the request against the limits, pick and run a strategy.

A run stops early, with its best answer so far and `finished: false`, when its
wall-clock budget (`strategy_timeout_s`, or the request's smaller `time_budget_s`;
stop_reason `timeout`) or its tokens (`max_total_tokens`, stop_reason
`token_budget`) run out.
"""

from __future__ import annotations

import asyncio
import time

from common.chat import ChatClient
from common.contracts.reasoning import ReasonRequest, ReasonResponse, Strategy
from common.errors import BadRequest, PayloadTooLarge
from common.models import ModelRegistry
from reasoning_svc.llm import ChatModel, Message
from reasoning_svc.run import Outcome, Params, Run, TokenBudgetSpent
from reasoning_svc.settings import ReasoningSettings
from reasoning_svc.strategies import STRATEGY_RUNNERS
from reasoning_svc.strategies.auto import choose_strategy
from reasoning_svc.tools_client import ToolRunner

__all__ = ["Reasoner"]


class Reasoner:
    def __init__(
        self,
        settings: ReasoningSettings,
        model: ChatModel,
        tools: ToolRunner | None,
        models: ModelRegistry | None = None,
    ) -> None:
        """`models` routes a request that names its model to that model's server."""
        self.settings = settings
        self.model = model
        self.tools = tools
        self.models = models

    def check_limits(self, request: ReasonRequest) -> None:
        """Refuse what exceeds the service's limits, naming the parameter (400/413)."""
        s = self.settings
        if len(request.question) > s.max_question_chars:
            raise PayloadTooLarge(
                f"The question has {len(request.question)} characters; the limit is "
                f"{s.max_question_chars}.",
                param="question",
                code="question_too_long",
            )
        context = request.context or []
        if len(context) > s.max_context_messages:
            raise PayloadTooLarge(
                f"{len(context)} context messages; the limit is {s.max_context_messages}.",
                param="context",
                code="context_too_long",
            )
        chars = sum(len(m.content) for m in context)
        if chars > s.max_context_chars:
            raise PayloadTooLarge(
                f"The context has {chars} characters; the limit is {s.max_context_chars}.",
                param="context",
                code="context_too_long",
            )
        limits = [
            ("samples", request.samples, s.max_samples, "too_many_samples"),
            ("max_steps", request.max_steps, s.max_steps_limit, "too_many_steps"),
            ("beam_width", request.beam_width, s.max_beam_width, "beam_too_wide"),
            ("depth", request.depth, s.max_depth, "search_too_deep"),
            ("proposals", request.proposals, s.max_proposals, "too_many_proposals"),
            ("max_tokens", request.max_tokens, s.max_tokens_limit, "max_tokens_too_large"),
        ]
        for name, value, limit, code in limits:
            if value is not None and value > limit:
                raise BadRequest(
                    f"'{name}' is {value}; this service allows at most {limit}.",
                    param=name,
                    code=code,
                )

    def params(self, request: ReasonRequest) -> Params:
        s = self.settings
        return Params(
            temperature=s.temperature if request.temperature is None else request.temperature,
            sample_temperature=(
                s.sample_temperature if request.temperature is None else request.temperature
            ),
            max_tokens=request.max_tokens or s.max_tokens,
            max_total_tokens=request.max_total_tokens,
            samples=request.samples or s.samples,
            max_steps=request.max_steps or s.max_steps,
            beam_width=request.beam_width or s.beam_width,
            depth=request.depth or s.depth,
            proposals=request.proposals or s.proposals,
            tools=tuple(request.tools) if request.tools is not None else None,
            check_goal=s.check_goal if request.check_goal is None else request.check_goal,
            observation_chars=s.observation_chars,
            scratchpad_chars=s.scratchpad_chars,
            pal_attempts=s.pal_attempts,
            react_constrained=s.react_constrained,
            pal_constrained=s.pal_constrained,
            pal_samples=request.samples or s.pal_samples,
        )

    def _model_for(self, request: ReasonRequest) -> ChatModel:
        if request.model and self.models is not None and isinstance(self.model, ChatClient):
            return self.models.chat(request.model, self.model.timeout_s)
        if request.model and isinstance(self.model, ChatClient):
            return self.model.with_model(request.model)
        return self.model

    async def reason(self, request: ReasonRequest) -> ReasonResponse:
        self.check_limits(request)
        started = time.perf_counter()
        context: list[Message] = [
            {"role": m.role if m.role != "tool" else "user", "content": m.content}
            for m in request.context or []
            if m.role != "system"
        ]
        run = Run(
            model=self._model_for(request),
            tools=self.tools,
            params=self.params(request),
            context=context,
            parallel_calls=self.settings.parallel_calls,
        )
        strategy = request.strategy
        if strategy == "auto":
            strategy, why = choose_strategy(request.question)
            run.event("choice", f"{strategy}: {why}", strategy=strategy)
        budget = self.settings.strategy_timeout_s
        if request.time_budget_s is not None:
            budget = min(budget, request.time_budget_s)
        outcome = await self._run_strategy(strategy, request.question, run, budget)
        model_name = getattr(run.model, "name", "") or "unknown"
        return ReasonResponse(
            answer=outcome.answer,
            strategy=strategy,
            requested_strategy=request.strategy,
            finished=outcome.finished,
            stop_reason=outcome.stop_reason,
            trace=run.trace,
            tool_calls=run.tool_calls,
            usage=run.usage,
            votes=outcome.votes,
            model=model_name,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    async def _run_strategy(
        self, strategy: Strategy, question: str, run: Run, budget_s: float
    ) -> Outcome:
        try:
            async with asyncio.timeout(budget_s):
                return await STRATEGY_RUNNERS[strategy](question, run)
        except TimeoutError:
            why = f"the run took longer than {budget_s:.3g}s"
            return self._stopped(run, "timeout", why)
        except TokenBudgetSpent as exc:
            return self._stopped(run, "token_budget", str(exc))

    @staticmethod
    def _stopped(run: Run, reason: str, why: str) -> Outcome:
        answer = run.best_answer()
        run.event("answer", answer, stopped=reason, why=why)
        return Outcome(answer, finished=False, stop_reason=reason)
