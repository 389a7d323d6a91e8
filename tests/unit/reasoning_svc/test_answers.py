"""Final answers out of model text, and the normal form votes compare."""

from __future__ import annotations

import pytest

from reasoning_svc.answers import extract_answer, normalize_answer, same_answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        (
            "Step 1: 30 heads.\nStep 2: 74 legs.\nAnswer: 23 chickens and 7 cows",
            "23 chickens and 7 cows",
        ),
        ("answer: 4\nWait, no.\nFinal Answer: 5", "5"),
        ("So the answer is 42. That's it.", "42"),
        ("We get \\boxed{17}", "17"),
        ("First 3 apples, then 5 more, so 8 apples in all", "8"),
        ("Paris", "Paris"),
        ("", ""),
    ],
)
def test_extracts_the_stated_answer(text: str, answer: str) -> None:
    assert extract_answer(text) == answer


@pytest.mark.parametrize(
    ("a", "b"),
    [("$1,200.00", "1200"), ("12 apples", "12"), ("Yes.", "yes"), ("0.5", "1/2"), ("-3", "-3.0")],
)
def test_equivalent_answers_share_a_normal_form(a: str, b: str) -> None:
    assert normalize_answer(a) == normalize_answer(b)


def test_different_answers_stay_apart() -> None:
    assert normalize_answer("12") != normalize_answer("13")
    assert normalize_answer("yes") != normalize_answer("no")


def test_same_answer_accepts_a_sentence_ending_in_the_number() -> None:
    assert same_answer("There are 7 cows", "7")
    assert not same_answer("There are 8 cows", "7")
    assert same_answer("Yes, they are.", "yes")
