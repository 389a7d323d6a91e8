"""What a rated answer answered, and how ratings and picks become KTO and DPO lines."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any, cast

from common.contracts.memory import Feedback, FeedbackFormat, FeedbackTurn, Message
from memory_svc import keys
from memory_svc.feedback import CONTEXT_TURNS, FeedbackStore, answered_turns
from memory_svc.feedback_export import export_lines


def _messages(*turns: tuple[str, str]) -> list[Message]:
    return [
        Message(
            id=f"m{i}",
            seq=i + 1,
            session_id="s",
            role=role,
            content=text,
            created_at=0.0,
            tokens=1,
        )
        for i, (role, text) in enumerate(turns)
    ]


def test_the_prompt_is_the_last_user_turn_and_a_regeneration_is_no_context() -> None:
    before = _messages(
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("user", "2+2?"),
        ("assistant", "5"),
        ("user", "2+2?"),
        ("assistant", "four"),
        ("user", "2+2?"),
    )
    prompt, context = answered_turns(before)
    assert prompt == "2+2?"
    assert [(t.role, t.content) for t in context] == [
        ("system", "Be brief."),
        ("user", "Hi"),
        ("assistant", "Hello"),
    ]
    # The same words asked later, after another question, are context again.
    later = _messages(("user", "2+2?"), ("assistant", "4"), ("user", "why?"), ("assistant", "…"))
    prompt, context = answered_turns([*later, *_messages(("user", "2+2?"))])
    assert prompt == "2+2?" and len(context) == 4
    assert answered_turns(_messages(("system", "Be brief."))) == (None, [])
    long = _messages(*[("user", f"q{i}") for i in range(40)])
    assert len(answered_turns(long)[1]) == CONTEXT_TURNS


class _Records:
    """A store holding `records` (what `export_lines` reads of it)."""

    def __init__(self, records: list[Feedback]) -> None:
        self.records = records

    async def each(self, space: keys.KeySpace) -> AsyncIterator[list[Feedback]]:
        yield self.records


def _record(
    mid: str, rating: int, content: str, prompt: str | None = "2+2?", **extra: Any
) -> Feedback:
    return Feedback(
        id=f"fb-{mid}",
        session_id="s",
        message_id=mid,
        rating=rating,
        message_role="assistant",
        message_content=content,
        created_at=0.0,
        updated_at=0.0,
        prompt=prompt,
        context=[FeedbackTurn(role="user", content="Hi")] if prompt else [],
        **extra,
    )


def _export(records: list[Feedback], format: FeedbackFormat) -> list[dict[str, Any]]:
    async def collect() -> list[bytes]:
        store = cast(FeedbackStore, _Records(records))
        return [line async for line in export_lines(store, keys.space("alpha"), format)]

    return [json.loads(line) for line in asyncio.run(collect())]


def test_a_pick_and_the_same_ratings_make_one_pair_and_old_records_no_example() -> None:
    records = [
        _record("a1", -1, "5"),
        _record("a2", 1, "4", preferred_over="a1", rejected_content="5"),
        _record("a3", -1, "22"),
        _record("old", 1, "from before prompts were kept", prompt=None),
    ]
    pairs = _export(records, "dpo")
    # The pick once (not again from a1's rating), then a2 against a3 from the ratings.
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("4", "5"),
        ("4", "22"),
    ]
    assert pairs[0]["prompt"] == [
        {"role": "user", "content": "Hi"},
        {"role": "user", "content": "2+2?"},
    ]
    kto = _export(records, "kto")
    assert [(e["completion"][0]["content"], e["label"]) for e in kto] == [
        ("5", False),
        ("4", True),
        ("22", False),
    ]
    assert len(_export(records, "raw")) == 4


def test_answers_with_no_text_are_no_training_example() -> None:
    # The platform can answer nothing (every sentence dropped as unsupported): such a
    # rating stays in the raw export, but no tuner can learn from an empty completion.
    records = [
        _record("e1", -1, "  "),
        _record("a1", 1, "4"),
        _record("a2", 1, "four", preferred_over="e1", rejected_content=" "),
        _record("a3", -1, "5"),
    ]
    kto = _export(records, "kto")
    assert [e["completion"][0]["content"] for e in kto] == ["4", "four", "5"]
    # Neither the pick over the empty answer nor its rating makes a pair.
    pairs = _export(records, "dpo")
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("4", "5"),
        ("four", "5"),
    ]
    assert len(_export(records, "raw")) == 4
