"""One reasoning run: the model and tools it may use, its parameters, and what it records.

Every model call goes through `Run.ask`, which records the prompt and the
completion in the trace and counts calls and tokens; every tool call goes
through `Run.call_tool`, which records it. Strategies add their own events
(thoughts, votes, evaluations) with `Run.event`, so the trace is complete by
construction.

A run may have a budget of completion tokens (`Params.max_total_tokens`):
each call reserves what it may write, at most what is left, and gives back
what it did not use; a call that finds nothing left raises `TokenBudgetSpent`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from common.contracts.reasoning import (
    ReasoningUsage,
    ToolCallRecord,
    TraceEvent,
    TraceKind,
)
from reasoning_svc.llm import ChatModel, Message
from reasoning_svc.tools_client import Observation, ToolRunner

__all__ = ["Outcome", "Params", "Run", "TokenBudgetSpent"]

T = TypeVar("T")


class TokenBudgetSpent(Exception):
    """The run's completion tokens are spent: no further model call may start."""


@dataclass(frozen=True)
class Params:
    """A request's knobs with the service's defaults filled in."""

    temperature: float = 0.0
    sample_temperature: float = 0.7
    max_tokens: int = 384
    # Completion tokens of all model calls together (None: no bound but max_tokens each).
    max_total_tokens: int | None = None
    samples: int = 5
    max_steps: int = 6
    beam_width: int = 2
    depth: int = 3
    proposals: int = 3
    tools: tuple[str, ...] | None = None
    check_goal: bool = False
    observation_chars: int = 1500
    scratchpad_chars: int = 2400
    pal_attempts: int = 2
    # ReAct turns as JSON decoded under a schema (else free text, parsed).
    react_constrained: bool = True
    # PAL programs decoded under a grammar of a Python subset (else free text).
    pal_constrained: bool = True
    # PAL programs sampled and run, their printed results voting (1: one greedy program).
    pal_samples: int = 1


@dataclass
class Outcome:
    answer: str
    finished: bool = True
    stop_reason: str = "answer"
    votes: dict[str, int] | None = None


@dataclass
class Run:
    model: ChatModel
    tools: ToolRunner | None
    params: Params
    # Earlier turns, shown before the question in every prompt.
    context: list[Message] = field(default_factory=list)
    parallel_calls: int = 4
    trace: list[TraceEvent] = field(default_factory=list)
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    usage: ReasoningUsage = field(default_factory=ReasoningUsage)

    def __post_init__(self) -> None:
        self._slots = asyncio.Semaphore(self.parallel_calls)
        self._tokens_left = self.params.max_total_tokens

    def _reserve(self, wanted: int) -> int:
        if self._tokens_left is None:
            return wanted
        if self._tokens_left <= 0:
            raise TokenBudgetSpent(f"the run's {self.params.max_total_tokens} tokens are spent")
        granted = min(wanted, self._tokens_left)
        self._tokens_left -= granted
        return granted

    def _give_back(self, tokens: int) -> None:
        if self._tokens_left is not None:
            self._tokens_left += max(0, tokens)

    def best_answer(self) -> str:
        """The last answer the run stated (a final one, else a sample's), or ""."""
        for event in reversed(self.trace):
            if event.kind == "answer" and event.content.strip():
                return event.content
        for event in reversed(self.trace):
            answer = event.data.get("answer")
            if isinstance(answer, str) and answer.strip():
                return answer
        return ""

    def event(
        self, kind: TraceKind, content: str, step: int | None = None, **data: Any
    ) -> TraceEvent:
        event = TraceEvent(index=len(self.trace), kind=kind, content=content, step=step, data=data)
        self.trace.append(event)
        return event

    async def ask(
        self,
        messages: list[Message],
        *,
        purpose: str,
        step: int | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: list[str] | None = None,
        response_format: dict[str, Any] | None = None,
        grammar: str | None = None,
    ) -> str:
        """One model call, recorded as a prompt and a completion event.

        `response_format` (OpenAI's) asks for a reply under a JSON schema; the prompt
        event names the schema. `grammar` (Lark) asks moe_svc for a reply in it; the
        prompt event says so.
        """
        # The strategy's instruction first, then the conversation, then its prompt.
        head = messages[:1] if messages and messages[0]["role"] == "system" else []
        full = [*head, *self.context, *messages[len(head) :]]
        temperature = self.params.temperature if temperature is None else temperature
        async with self._slots:
            granted = self._reserve(max_tokens or self.params.max_tokens)
            schema = (response_format or {}).get("json_schema", {}).get("name")
            prompt = self.event(
                "prompt",
                full[-1]["content"],
                step,
                purpose=purpose,
                messages=full,
                temperature=temperature,
                **({"schema": schema} if schema else {}),
                **({"grammar": True} if grammar else {}),
            )
            try:
                completion = await self.model.complete(
                    full,
                    temperature=temperature,
                    max_tokens=granted,
                    stop=stop,
                    response_format=response_format,
                    grammar=grammar,
                )
            except BaseException:
                self._give_back(granted)
                raise
            self._give_back(granted - completion.completion_tokens)
        self.usage.model_calls += 1
        self.usage.prompt_tokens += completion.prompt_tokens
        self.usage.completion_tokens += completion.completion_tokens
        self.usage.total_tokens += completion.prompt_tokens + completion.completion_tokens
        self.usage.estimated = self.usage.estimated or completion.estimated
        self.event(
            "completion",
            completion.text,
            step,
            purpose=purpose,
            prompt_index=prompt.index,
            tokens=completion.completion_tokens,
        )
        return completion.text

    async def call_tool(self, tool: str, arguments: dict[str, Any]) -> Observation:
        if self.tools is None:
            observation = Observation(tool, arguments, None, "no tools are available", 0.0)
        else:
            observation = await self.tools.invoke(tool, arguments)
        self.tool_calls.append(
            ToolCallRecord(
                tool=tool,
                arguments=arguments,
                output=observation.output,
                error=observation.error,
                duration_ms=observation.duration_ms,
            )
        )
        return observation

    async def gather(self, calls: list[Awaitable[T]]) -> list[T]:
        """Await independent calls concurrently (`ask` bounds how many reach the model).

        When one fails, the others are cancelled: nothing runs on after the strategy ends.
        """
        tasks = [asyncio.ensure_future(call) for call in calls]
        try:
            return list(await asyncio.gather(*tasks))
        except Exception:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
