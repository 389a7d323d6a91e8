"""A reasoning run stops at its token budget and at its wall-clock budget, with its best answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from common.chat import Completion, Message
from common.contracts.reasoning import ReasonRequest
from reasoning_svc.reasoner import Reasoner
from reasoning_svc.settings import ReasoningSettings


class SpendingModel:
    """Writes every token it may (`max_tokens`), after `delay_s`; records what it was allowed."""

    name = "spending"

    def __init__(self, reply: str = "Answer: 7", delay_s: float = 0.0) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.allowed: list[int] = []
        self.finished = 0

    async def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
        response_format: dict[str, Any] | None = None,
        grammar: str | None = None,
    ) -> Completion:
        self.allowed.append(max_tokens)
        await asyncio.sleep(self.delay_s)
        self.finished += 1
        return Completion(self.reply, prompt_tokens=10, completion_tokens=max_tokens)


def _reason(model: SpendingModel, settings: ReasoningSettings, **request: Any) -> dict[str, Any]:
    reasoner = Reasoner(settings, model, tools=None)
    body = ReasonRequest.model_validate({"question": "Is 7 prime?", **request})
    return asyncio.run(reasoner.reason(body)).model_dump()


def test_the_token_budget_bounds_all_calls_together() -> None:
    model = SpendingModel()
    settings = ReasoningSettings(parallel_calls=1)
    result = _reason(
        model,
        settings,
        strategy="self_consistency",
        samples=5,
        max_tokens=300,
        max_total_tokens=700,
    )
    # 300 + 300 + 100, then nothing is left for the fourth sample.
    assert model.allowed == [300, 300, 100]
    assert result["usage"]["completion_tokens"] == 700
    assert result["finished"] is False and result["stop_reason"] == "token_budget"
    # The samples so far agreed on 7: that is the best answer the run has.
    assert result["answer"] == "7"
    assert result["trace"][-1]["data"]["stopped"] == "token_budget"


def test_a_budget_larger_than_the_run_changes_nothing() -> None:
    model = SpendingModel()
    result = _reason(
        model, ReasoningSettings(), strategy="cot", max_tokens=50, max_total_tokens=1000
    )
    assert model.allowed == [50]
    assert result["finished"] is True and result["answer"] == "7"


def test_a_run_past_its_wall_clock_budget_stops_and_says_so() -> None:
    model = SpendingModel(delay_s=5.0)
    settings = ReasoningSettings(strategy_timeout_s=0.2)
    started = time.monotonic()
    result = _reason(model, settings, strategy="self_consistency", samples=4)
    assert time.monotonic() - started < 2
    assert result["finished"] is False and result["stop_reason"] == "timeout"
    assert result["answer"] == "" and model.finished == 0


def test_the_callers_time_budget_stops_the_run_with_the_answers_so_far() -> None:
    # Two samples come back at 0.3 s each, one after the other; the caller has 0.8 s,
    # the service's own budget is far longer.
    model = SpendingModel(delay_s=0.3)
    settings = ReasoningSettings(strategy_timeout_s=60, parallel_calls=1)
    started = time.monotonic()
    result = _reason(model, settings, strategy="self_consistency", samples=5, time_budget_s=0.8)
    assert time.monotonic() - started < 2
    assert result["finished"] is False and result["stop_reason"] == "timeout"
    assert model.finished == 2 and result["answer"] == "7"
