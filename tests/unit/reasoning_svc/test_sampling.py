"""direct, chain of thought and self-consistency with a scripted model."""

from __future__ import annotations

from reasoning_svc.strategies.sampling import cot, direct, majority_vote, self_consistency
from tests.helpers.reasoning_fakes import ScriptedModel, make_run


async def test_direct_asks_once_and_answers_with_the_reply() -> None:
    model = ScriptedModel(["  Canberra  "])
    run = make_run(model)

    outcome = await direct("What is the capital of Australia?", run)

    assert outcome.answer == "Canberra" and outcome.finished
    assert len(model.calls) == 1 and run.usage.model_calls == 1
    assert [e.kind for e in run.trace] == ["prompt", "completion", "answer"]
    assert run.trace[0].data["messages"][-1]["content"] == "What is the capital of Australia?"


async def test_cot_asks_for_steps_and_extracts_the_final_line() -> None:
    model = ScriptedModel(["2 cows have 8 legs.\n3 hens have 6 legs.\nAnswer: 14"])
    run = make_run(model)

    outcome = await cot("How many legs do 2 cows and 3 hens have?", run)

    assert outcome.answer == "14"
    assert "step by step" in model.calls[0]["messages"][0]["content"]
    assert any(e.kind == "thought" and "3 hens" in e.content for e in run.trace)


async def test_self_consistency_returns_the_majority_of_normalised_answers() -> None:
    replies = [
        "Answer: 12",
        "Answer: 13",
        "so it is $12.00\nAnswer: $12.00",
        "Answer: 7",
        "Answer: 12",
    ]
    model = ScriptedModel(list(replies))
    run = make_run(model, samples=5, sample_temperature=0.8)

    outcome = await self_consistency("A question", run)

    assert outcome.answer == "12"
    assert outcome.votes == {"12": 3, "13": 1, "7": 1}
    assert len(model.calls) == 5 and run.usage.model_calls == 5
    assert {c["temperature"] for c in model.calls} == {0.8}
    vote = next(e for e in run.trace if e.kind == "vote")
    assert vote.data["votes"] == {"12": 3, "13": 1, "7": 1}
    assert [e.step for e in run.trace if e.kind == "thought"] == sorted(range(5))


def test_a_tied_vote_goes_to_the_answer_reached_first() -> None:
    assert majority_vote(["9", "4", "4", "9"]) == ("9", {"9": 2, "4": 2})
    assert majority_vote(["", " "]) == (None, {})


async def test_self_consistency_without_any_answer_is_unfinished() -> None:
    model = ScriptedModel(["", "", ""])
    outcome = await self_consistency("Q", make_run(model, samples=3))

    assert not outcome.finished and outcome.stop_reason == "no_answer" and outcome.answer == ""
