"""Tree-of-Thoughts: proposals, values, the beam, the depth limit and early answers."""

from __future__ import annotations

from reasoning_svc.llm import Message
from reasoning_svc.strategies.tot import parse_proposals, parse_value, tree_of_thoughts
from tests.helpers.reasoning_fakes import ScriptedModel, make_run


def test_proposals_are_distinct_lines_without_bullets() -> None:
    text = (
        "Possible next steps:\n1. Add 2 and 3\n- Multiply 4 by 6\n* Add 2 and 3\nStep 3: Divide\n"
    )
    assert parse_proposals(text, 5) == ["Add 2 and 3", "Multiply 4 by 6", "Divide"]
    assert parse_proposals(text, 1) == ["Add 2 and 3"]


def test_values_follow_the_judgement_word() -> None:
    assert parse_value("Sure.") == 20.0
    assert parse_value("I think it is likely") == 1.0
    assert parse_value("impossible, 5 is odd") == 0.001
    assert parse_value("hmm") == 0.1


def judge(messages: list[Message]) -> str:
    steps = messages[-1]["content"]
    return "sure" if "good" in steps.split("Steps:")[1] else "impossible"


async def test_the_beam_keeps_the_best_valued_states() -> None:
    model = ScriptedModel(
        rules=[
            ("propose possible next steps", ["bad a\ngood b\nbad c", "good d\nbad e\nbad f"]),
            ("judge partial solutions", judge),
            ("Finish the solution", "good b then good d\nAnswer: 9"),
        ]
    )
    run = make_run(model, depth=2, beam_width=1, proposals=3)

    outcome = await tree_of_thoughts("Problem?", run)

    assert outcome.answer == "9"
    selections = [e for e in run.trace if e.kind == "selection"]
    assert [s.content for s in selections] == ["good b", "good b | good d"]
    assert [s.data["values"] for s in selections] == [[20.0], [20.0]]
    # depth 2 x beam 1 x (1 proposal call + 3 value calls) + the final call
    assert len(model.calls) == 2 * (1 + 3) + 1
    proposal_prompt = model.calls[4]["messages"][-1]["content"]
    assert "1. good b" in proposal_prompt


async def test_beam_width_bounds_the_states_expanded_per_depth() -> None:
    model = ScriptedModel(
        rules=[
            ("propose possible next steps", "good x\ngood y\ngood z"),
            ("judge partial solutions", "likely"),
            ("Finish the solution", "Answer: done"),
        ]
    )
    run = make_run(model, depth=3, beam_width=2, proposals=3)

    await tree_of_thoughts("Problem?", run)

    proposals = [c for c in model.calls if "propose" in c["messages"][0]["content"]]
    values = [c for c in model.calls if "judge" in c["messages"][0]["content"]]
    assert len(proposals) == 1 + 2 + 2  # the root, then the beam of 2 at depths 2 and 3
    assert len(values) == 3 + 6 + 6
    assert max(e.step or 0 for e in run.trace) == 3
    # Ties keep the order of proposal.
    first = next(e for e in run.trace if e.kind == "selection")
    assert first.data["kept"] == [0, 1]


async def test_an_answer_line_in_the_best_state_ends_the_search_early() -> None:
    model = ScriptedModel(
        rules=[
            ("propose possible next steps", "Answer: 24\ntry 4 * 6"),
            (
                "judge partial solutions",
                lambda m: "sure" if "Answer" in m[-1]["content"] else "likely",
            ),
        ]
    )
    run = make_run(model, depth=4, beam_width=2, proposals=2)

    outcome = await tree_of_thoughts("Make 24 from 4 and 6", run)

    assert outcome.answer == "24" and outcome.finished
    assert len(model.calls) == 1 + 2  # one depth, no final call


async def test_no_proposals_finish_from_the_empty_state() -> None:
    model = ScriptedModel(["", "Answer: 3"])
    outcome = await tree_of_thoughts("Q", make_run(model, depth=3))

    assert outcome.answer == "3" and len(model.calls) == 2
