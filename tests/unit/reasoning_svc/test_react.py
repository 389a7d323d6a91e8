"""ReAct: tool use, errors fed back as observations, the iteration limit, the goal check."""

from __future__ import annotations

from common.contracts.tools import ToolFunction, ToolSpec
from reasoning_svc.strategies.react import parse_arguments, parse_step, react, recent_steps
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
    # The second prompt carries the memory of the first step: the model's turn, then what
    # the tool returned.
    turn, observation = model.calls[1]["messages"][-2:]
    assert turn["role"] == "assistant" and "Action: calculator" in turn["content"]
    assert observation == {"role": "user", "content": 'Observation: {"result": "391"}'}
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
    model = ScriptedModel(
        rules=[("step limit is reached", "Final Answer: 2"), ("Use this format", loop)]
    )
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
            ("Use this format", ["Final Answer: some cows", "Final Answer: 7 cows"]),
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


async def test_worked_examples_come_first_and_old_steps_leave_the_prompt() -> None:
    loop = [
        f'Thought: step {i}\nAction: calculator\nAction Input: {{"expression": "{i}+{i}"}}'
        for i in range(1, 7)
    ]
    model = ScriptedModel(rules=[("step limit is reached", "Final Answer: 12"), ("Use this", loop)])
    run = make_run(model, FakeTools(), max_steps=6, scratchpad_chars=300)

    await react("Add them up", run)

    first = model.calls[0]["messages"]
    # The calculator is available, so two worked trajectories precede the question.
    assert [m["role"] for m in first[1:9]] == ["user", "assistant", "user", "assistant"] * 2
    assert 'Action Input: {"expression": "45 * 12 - 30"}' in first[2]["content"]
    assert first[-1]["content"] == "Question: Add them up"
    last = model.calls[5]["messages"]
    # Five steps do not fit in 300 characters: the oldest leave the prompt, which says so,
    # while the trace keeps every one.
    turns = [m["content"] for m in last if m["role"] == "assistant"][4:]
    assert turns[-1].startswith("Thought: step 5") and not any("step 1" in t for t in turns)
    assert "earlier steps are left out" in last[9]["content"]
    assert len([e for e in run.trace if e.kind == "action"]) == 6


def test_recent_steps_keeps_the_newest_that_fit() -> None:
    steps = [(f"turn {i}", "x" * 50) for i in range(10)]
    kept, omitted = recent_steps(steps, 130)
    assert [t for t, _ in kept] == ["turn 8", "turn 9"] and omitted == 8
    # The newest step is always kept, cut to fit.
    [(turn, observation)], omitted = recent_steps([("t", "y" * 1000)], 200)
    assert omitted == 0 and len(observation) == 200 - len(turn)


def test_hallucinated_or_unclosed_arguments_keep_the_tool_s_own() -> None:
    spec = ToolSpec(
        function=ToolFunction(
            name="calculator",
            description="",
            parameters={"properties": {"expression": {}}, "required": ["expression"]},
        )
    )
    # The model often writes the observation it expects into the input: that is dropped.
    written = '{"expression": "99 * 101", "result": "9909", "exact": true}'
    assert parse_arguments(written, spec) == {"expression": "99 * 101"}
    unclosed = '{"expression": "2468 + 1357 - 999", "result": "2468 + 1357 = 38'
    assert parse_arguments(unclosed, spec) == {"expression": "2468 + 1357 - 999"}
