"""`auto` picks the strategy from the question."""

from __future__ import annotations

import pytest

from reasoning_svc.strategies.auto import choose_strategy


@pytest.mark.parametrize(
    ("question", "strategy"),
    [
        ("What time is it in Tokyo?", "react"),
        ("Convert 72 F to C and add 10", "react"),
        ("A farmer has 30 heads and 74 legs. How many cows are there?", "pal"),
        ("How much do 3 pens cost at $2 each?", "pal"),
        ("How can I measure exactly 4 liters with a 3 and a 5 liter jug?", "tot"),
        (
            "Solve the riddle about the wolf, the goat and the cabbage: how to cross the river?",
            "tot",
        ),
        (
            "If all bloops are razzies and all razzies are lazzies, are all bloops lazzies?",
            "self_consistency",
        ),
        ("Capital of France?", "direct"),
        ("Plan how to cut our costs without layoffs", "cot"),
    ],
)
def test_choice(question: str, strategy: str) -> None:
    chosen, why = choose_strategy(question)
    assert chosen == strategy and why
