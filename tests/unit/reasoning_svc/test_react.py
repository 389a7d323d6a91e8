"""ReAct: tool use, errors fed back as observations, the iteration limit, the goal check."""

from __future__ import annotations

from common.contracts.tools import ToolFunction, ToolSpec
from reasoning_svc.strategies.react import parse_arguments, parse_step, react
from tests.unit.reasoning_svc.fakes import FakeTools, ScriptedModel, make_run

CALC = 'Thought: I should compute it.\nAction: calculator\nAction Input: {"expression": "17*23"}'


def test_parse_step_reads_actions_and_final_answers() -> None:
    step = parse_step(CALC)
    assert (step.thought, step.action, step.action_input) == (
        "I should compute it.",
        "calculator",
        '{"expression": "17*23"}',
    )
    final = parse_step("Thought: done\nFinal Answer: 391\nmore text")
    assert final.final_answer == "391" and final.action is None
    assert parse_step("I am not sure what to do").action is None


def test_bare_action_input_goes_to_the_only_argument() -> None:
    spec = ToolSpec(
        function=ToolFunction(
            name="calculator",
            description="",
            parameters={"properties": {"expression": {}}, "required": ["expression"]},
        )
    )
    assert parse_arguments("17 * 23", spec) == {"expression": "17 * 23"}
    assert parse_arguments('```json\n{"expression": "1+1"}\n```', spec) == {"expression": "1+1"}


async def test_acts_observes_and_answers() -> None:
    model = ScriptedModel([CALC, "Thought: I know it.\nFinal Answer: 391"])
    tools = FakeTools()
    run = make_run(model, tools, max_steps=4)

    outcome = await react("What is 17 times 23?", run)

    assert outcome.answer == "391" and outcome.finished and outcome.stop_reason == "answer"
    assert tools.invocations == [("calculator", {"expression": "17*23"})]
    assert run.tool_calls[0].output == {"result": "391"}
    kinds = [e.kind for e in run.trace if e.kind not in ("prompt", "completion")]
    assert kinds == ["thought", "action", "observation", "thought", "check", "answer"]
    # The second prompt carries the memory of the first step.
    second = model.calls[1]["messages"][-1]["content"]
    assert "Action: calculator" in second and 'Observation: {"result": "391"}' in second
    assert model.calls[0]["stop"] and "Observation:" in model.calls[0]["stop"][-1]


async def test_unknown_tools_bad_arguments_and_tool_errors_become_observations() -> None:
    model = ScriptedModel(
        [
            'Thought: search\nAction: web_search\nAction Input: {"q": "x"}',
            'Thought: try\nAction: broken\nAction Input: {"x": "1"}',
            'Thought: calc\nAction: calculator\nAction Input: {"expression": "two plus"}',
            "I will just think about it.",
            "Final Answer: unknown",
        ]
    )
    run = make_run(model, FakeTools(), max_steps=6)

    outcome = await react("Q", run)

    observations = [e.content for e in run.trace if e.kind == "observation"]
    assert observations[0].startswith("Unknown tool 'web_search'. Available tools: calculator")
    assert observations[1] == "Error: the tool crashed"
    assert observations[2] == "Error: Cannot evaluate the expression"
    assert observations[3].startswith("Invalid format")
    assert outcome.answer == "unknown" and outcome.finished
    assert [c.tool for c in run.tool_calls] == ["broken", "calculator"]


async def test_the_iteration_limit_stops_the_loop_with_a_forced_answer() -> None:
    loop = 'Thought: again\nAction: calculator\nAction Input: {"expression": "1+1"}'
    model = ScriptedModel(rules=[("step limit is reached", "Final Answer: 2"), ("Question:", loop)])
    tools = FakeTools()
    run = make_run(model, tools, max_steps=3)

    outcome = await react("Loop forever", run)

    assert not outcome.finished and outcome.stop_reason == "max_steps" and outcome.answer == "2"
    assert len(model.calls) == 3 + 1
    # The same call is not run again; its earlier result is repeated.
    assert len(tools.invocations) == 1
    assert "(same call as step 1)" in [e for e in run.trace if e.kind == "observation"][-1].content


async def test_tools_can_be_restricted() -> None:
    model = ScriptedModel([CALC, "Final Answer: no calculator"])
    run = make_run(model, FakeTools(), tools=("python",))

    await react("Q", run)

    first_prompt = model.calls[0]["messages"][0]["content"]
    assert "- python:" in first_prompt and "- calculator:" not in first_prompt
    assert (
        "Unknown tool 'calculator'" in next(e for e in run.trace if e.kind == "observation").content
    )


async def test_the_goal_check_sends_an_incomplete_answer_back() -> None:
    model = ScriptedModel(
        rules=[
            ("fully answers", ["NO: it gives no number", "YES"]),
            ("Question:", ["Final Answer: some cows", "Final Answer: 7 cows"]),
        ]
    )
    run = make_run(model, FakeTools(), check_goal=True, max_steps=4)

    outcome = await react("How many cows?", run)

    assert outcome.answer == "7 cows" and outcome.finished
    checks = [e for e in run.trace if e.kind == "check"]
    assert [c.data["met"] for c in checks] == [False, True]
    assert "it gives no number" in checks[0].content


async def test_an_empty_final_answer_does_not_meet_the_goal() -> None:
    model = ScriptedModel(["Final Answer:", "Final Answer: 5"])
    run = make_run(model, FakeTools())

    outcome = await react("Q", run)

    assert outcome.answer == "5"
    assert [c.data["met"] for c in run.trace if c.kind == "check"] == [False, True]


async def test_without_tools_the_agent_is_told_so() -> None:
    model = ScriptedModel([CALC, "Final Answer: 391"])
    run = make_run(model, None)

    outcome = await react("Q", run)

    assert outcome.answer == "391"
    assert "no tools are available" in model.calls[0]["messages"][0]["content"]
