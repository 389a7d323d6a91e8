"""The checks on extracted facts, and how each form reads the model's reply."""

from __future__ import annotations

from typing import Any

import pytest

from common.chat import ChatClient, Completion
from memory_svc.facts import (
    MAX_FACTS,
    ExtractionUnavailable,
    MoeFactExtractor,
    first_person_statements,
    grounded_facts,
    speaks_of_self,
)


class ScriptedChat(ChatClient):
    """Answers every completion with `reply` and keeps what it was asked."""

    def __init__(self, reply: str) -> None:
        self.name = "scripted"
        self.reply = reply
        self.asked: list[dict[str, Any]] = []

    async def complete(self, messages: list[Any], **kwargs: Any) -> Completion:
        self.asked.append({"messages": messages, **kwargs})
        return Completion(self.reply, 10, 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I am allergic to peanuts.", True),
        ("My daughter is five", True),
        ("We moved to Lyon", True),
        ("I\u2019m vegetarian", True),
        ("What is the capital of Angola?", False),
        ("Write a poem about the sea.", False),
        ("Imagine a world without cars", False),  # "im" only as a whole word
    ],
)
def test_only_first_person_texts_can_state_facts(text: str, expected: bool) -> None:
    assert speaks_of_self(text) is expected


def test_facts_not_about_the_user_invented_or_repeated_are_dropped() -> None:
    kept, dropped = grounded_facts(
        [
            "The user is a nurse",
            "the user is a nurse.",
            "Porto is in Portugal.",
            "The user owns a yacht.",
            "The   user lives in Porto.",
        ],
        "Hi, I'm Maria and I work as a nurse in Porto.",
    )
    assert kept == ["The user is a nurse.", "The user lives in Porto."]
    assert dropped == ["the user is a nurse.", "Porto is in Portugal.", "The user owns a yacht."]


def test_at_most_max_facts_are_kept() -> None:
    source = " ".join(f"word{i}" for i in range(20))
    kept, _ = grounded_facts([f"The user likes word{i}" for i in range(20)], source)
    assert len(kept) == MAX_FACTS


@pytest.mark.parametrize(
    ("text", "statements"),
    [
        (
            "Hi, I'm Maria and I work as a nurse in Porto.",
            ["The user is Maria.", "The user works as a nurse in Porto."],
        ),
        ("I speak Portuguese and Spanish.", ["The user speaks Portuguese and Spanish."]),
        ("My wife and I love hiking.", ["The user's wife.", "The user loves hiking."]),
        (
            "I'm diabetic, so I watch my sugar.",
            ["The user is diabetic.", "The user watches the user's sugar."],
        ),
        ("I study maths; I have two dogs.", ["The user studies maths.", "The user has two dogs."]),
        ("I really enjoy jazz. What should I play?", ["The user really enjoys jazz."]),
        ("Give me a recipe for pancakes.", []),  # "me" is not the subject
        ("Can you help me with my email?", []),  # a question
        ("The weather is nice.", []),
    ],
)
def test_statements_are_the_users_first_person_clauses_in_the_third_person(
    text: str, statements: list[str]
) -> None:
    assert first_person_statements(text) == statements


async def test_the_statements_form_offers_the_clauses_as_an_enum_and_keeps_the_chosen() -> None:
    chat = ScriptedChat('{"facts": ["The user is a nurse."]}')
    extractor = MoeFactExtractor(chat)  # the default form
    facts = await extractor.extract(["I am a nurse and I wonder about rain."])
    assert facts.facts == ["The user is a nurse."]
    (call,) = chat.asked
    items = call["response_format"]["json_schema"]["schema"]["properties"]["facts"]["items"]
    assert items == {"enum": ["The user is a nurse.", "The user wonders about rain."]}
    assert call["messages"][-1]["content"].endswith(
        "Statements:\n- The user is a nurse.\n- The user wonders about rain."
    )


async def test_the_statements_form_asks_nothing_without_a_first_person_statement() -> None:
    chat = ScriptedChat('{"facts": []}')
    facts = await MoeFactExtractor(chat).extract(["Tell me about my options?"])
    assert facts.facts == [] and chat.asked == []


async def test_the_schema_form_asks_for_the_schema_and_reads_the_object() -> None:
    chat = ScriptedChat('{"facts": ["The user is vegetarian.", "The user lives in Oslo."]}')
    facts = await MoeFactExtractor(chat, form="schema").extract(
        ["I'm vegetarian.", "Who wrote Hamlet?"]
    )
    assert facts.facts == ["The user is vegetarian."] and facts.model == "scripted"
    assert facts.dropped == ["The user lives in Oslo."]  # Oslo is not in what was sent
    (call,) = chat.asked
    assert call["response_format"]["json_schema"]["name"] == "user_facts"
    assert call["messages"][-1] == {"role": "user", "content": "I'm vegetarian."}
    assert call["messages"][2]["content"].startswith('{"facts": [')  # the worked examples


async def test_the_lines_form_reads_one_fact_a_line() -> None:
    chat = ScriptedChat("- The user is vegetarian.\n* The user eats fish\nNONE\n")
    facts = await MoeFactExtractor(chat, form="lines").extract(["I'm vegetarian, I eat fish"])
    assert facts.facts == ["The user is vegetarian.", "The user eats fish."]
    assert chat.asked[0]["response_format"] is None


@pytest.mark.parametrize("reply", ['{"facts": "The user', '["The user is tall."]', "{}"])
async def test_an_unreadable_reply_is_an_error_not_an_empty_memory(reply: str) -> None:
    with pytest.raises(ExtractionUnavailable):
        await MoeFactExtractor(ScriptedChat(reply), form="schema").extract(["I am tall."])


async def test_no_first_person_text_means_no_model_call() -> None:
    chat = ScriptedChat('{"facts": ["The user is tall."]}')
    facts = await MoeFactExtractor(chat, form="schema").extract(["How tall is Everest?"])
    assert facts.facts == [] and facts.model is None and chat.asked == []
