"""Every plan the router makes can run: each step has a runner, and its `after` and `when`
name steps of the same plan that come before it."""

from __future__ import annotations

import pytest

from common.contracts.router import INTENTS, Intent, Plan
from router_svc.conversation import INSTRUCTIONS
from router_svc.plans import SESSION, failed_step, make_plan
from router_svc.step_runners import STEP_RUNNERS

# One text per branch of the plans: a picture, code to run, code to explain, an agent task.
TEXTS = (
    "Who invented the telephone?",
    "Draw a handbag",
    "Write a poem",
    "Run this:\n```python\nprint(1)\n```",
    "Explain this:\n```python\nprint(1)\n```",
    "What time is it in Tokyo for a run?",
)


def every_plan() -> list[Plan]:
    return [
        make_plan(intent, text, fallback=fallback)
        for intent in INTENTS
        for text in TEXTS
        for fallback in (False, True)
    ]


@pytest.mark.parametrize("plan", every_plan(), ids=lambda p: f"{p.intent}:{p.description[:30]}")
def test_each_step_has_a_runner_and_depends_only_on_earlier_steps(plan: Plan) -> None:
    seen: set[str] = set()
    for step in plan.steps:
        assert step.name in STEP_RUNNERS
        assert step.name not in seen, "a step name appears once in a plan"
        assert set(step.after) <= seen, f"{step.name} comes after a later or unknown step"
        if step.when is not None and step.when != SESSION:
            assert failed_step(step.when) in step.after, f"{step.name}: {step.when!r}"
        if step.name == "moe.answer":
            assert step.arguments["mode"] in INSTRUCTIONS
        seen.add(step.name)


@pytest.mark.parametrize("intent", INTENTS)
def test_the_answer_is_stored_after_every_step_that_may_write_it(intent: Intent) -> None:
    for text in TEXTS:
        plan = make_plan(intent, text, fallback=False)
        write_back = next(s for s in plan.steps if s.name == "memory.write_assistant")
        answers = {s.name for s in plan.steps if not s.name.startswith("memory.")}
        assert answers <= set(write_back.after)
        assert "memory.write_user" in write_back.after


def test_fallbacks_are_optional_steps_failing() -> None:
    for plan in every_plan():
        optional = {s.name for s in plan.steps if s.optional}
        for step in plan.steps:
            if step.when is not None and step.when != SESSION:
                assert failed_step(step.when) in optional


def test_failed_step_reads_only_fallback_conditions() -> None:
    assert failed_step("rag.answer failed") == "rag.answer"
    assert failed_step(SESSION) is None
