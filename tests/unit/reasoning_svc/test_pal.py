"""Program-aided reasoning: code run by the python tool, retries on failure."""

from __future__ import annotations

from reasoning_svc.strategies.pal import PAL_GRAMMAR, extract_code, program_aided
from tests.helpers.reasoning_fakes import FakeTools, ScriptedModel, make_run


def test_extracts_the_fenced_program() -> None:
    assert extract_code("Here:\n```python\nprint(1)\n```\nDone") == "print(1)"
    assert extract_code("```\nx = 2\nprint(x)\n```") == "x = 2\nprint(x)"
    assert extract_code("print(3)") == "print(3)"
    assert extract_code("The answer is 4.") is None


async def test_the_printed_result_is_the_answer() -> None:
    model = ScriptedModel(
        ["```python\nheads, legs = 30, 74\ncows = (legs - 2 * heads) // 2\nprint(cows)\n```"]
    )
    tools = FakeTools()
    run = make_run(model, tools)

    outcome = await program_aided("30 heads and 74 legs: how many cows?", run)

    assert outcome.answer == "7" and outcome.finished
    assert tools.invocations[0][0] == "python"
    assert [e.kind for e in run.trace if e.kind not in ("prompt", "completion")] == [
        "program",
        "observation",
        "answer",
    ]


async def test_a_failed_program_is_shown_to_the_model_for_another_try() -> None:
    model = ScriptedModel(["```python\nprint(1/0)\n```", "```python\nprint(2 + 2)\n```"])
    run = make_run(model, FakeTools(), pal_attempts=2)

    outcome = await program_aided("Q", run)

    assert outcome.answer == "4"
    retry = model.calls[1]["messages"]
    assert "ZeroDivisionError" in retry[-1]["content"] and retry[-2]["role"] == "assistant"


async def test_no_program_that_runs_falls_back_to_the_text() -> None:
    model = ScriptedModel(["I think it is 5.", "```python\nx = 1\n```"])
    run = make_run(model, FakeTools(), pal_attempts=2)

    outcome = await program_aided("Q", run)

    assert not outcome.finished and outcome.stop_reason == "program_failed"
    assert "printed nothing" in [e for e in run.trace if e.kind == "observation"][-1].content


async def test_the_program_is_asked_for_under_the_grammar_unless_turned_off() -> None:
    constrained = ScriptedModel(["```python\nprint(2 + 2)\n```"])
    await program_aided("Q", make_run(constrained, FakeTools()))
    free = ScriptedModel(["```python\nprint(2 + 2)\n```"])
    await program_aided("Q", make_run(free, FakeTools(), pal_constrained=False))

    assert constrained.calls[0]["grammar"] == PAL_GRAMMAR
    assert free.calls[0]["grammar"] is None


async def test_sampled_programs_vote_on_what_they_print() -> None:
    model = ScriptedModel(
        [
            "```python\nprint(8)\n```",  # greedy, outvoted
            "```python\nprint(1 / 0)\n```",  # fails: no vote
            "```python\nx = 3 + 4\nprint(x)\n```",
            "```python\nprint(14 // 2)\n```",
        ]
    )
    run = make_run(model, FakeTools(), pal_samples=4)

    outcome = await program_aided("Q", run)

    assert outcome.answer == "7" and outcome.finished
    assert outcome.votes == {"8": 1, "7": 2}
    assert [c["temperature"] for c in model.calls] == [0.0, 0.7, 0.7, 0.7]
    answer = [e for e in run.trace if e.kind == "answer"][-1]
    assert answer.data["program"] == "x = 3 + 4\nprint(x)"


async def test_a_tie_goes_to_the_greedy_program_and_none_running_falls_back() -> None:
    model = ScriptedModel(["```python\nprint(5)\n```", "```python\nprint(6)\n```"])
    assert (await program_aided("Q", make_run(model, FakeTools(), pal_samples=2))).answer == "5"

    broken = ScriptedModel(["Answer: 9", "```python\nprint(y)\n```"])
    outcome = await program_aided("Q", make_run(broken, FakeTools(), pal_samples=2))
    assert outcome.answer == "9" and outcome.stop_reason == "program_failed"
