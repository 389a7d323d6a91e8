"""The feedback loop's scripted judge: right and short answers win."""

from __future__ import annotations

from bench.feedback_loop import Judge, pairwise

JUDGE = Judge(concise_words=8)
PARIS = ["Paris"]


def test_thumbs_up_only_for_right_and_concise() -> None:
    assert JUDGE.rating("The capital is Paris [1].\n\n**Sources:**\n1. France", PARIS) == 1
    assert JUDGE.rating("Lyon.", PARIS) == -1
    rambling = "Well, " + "there is a lot to say about France and its cities " * 2 + "Paris."
    assert JUDGE.rating(rambling, PARIS) == -1
    assert JUDGE.rating("", PARIS) == -1
    # Whole words only: "Parisian" does not name Paris.
    assert not JUDGE.right("A Parisian answer.", PARIS)


def test_pairwise_prefers_right_then_concise() -> None:
    long_right = "Paris is the answer, " + "and more words follow here " * 3
    tally = pairwise(
        JUDGE,
        ["Paris.", "Lyon.", long_right, "Paris."],
        ["Lyon.", "Paris.", "Paris.", "It is Paris."],
        [PARIS] * 4,
    )
    assert tally == {"wins": 1, "losses": 2, "ties": 1}
