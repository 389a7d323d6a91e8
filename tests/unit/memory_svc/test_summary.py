"""The running summary's pieces: chunks of a long gap, the user's own statements, and the
clean-up of what a small model writes."""

from __future__ import annotations

from memory_svc.summary import MAX_STATED_CHARS, chunks, cleaned, compose, stated
from tests.helpers.memory_messages import stored_message

message = stored_message


def test_a_long_gap_is_cut_into_runs_that_each_fit_one_call_in_order() -> None:
    gap = [message(i, "user" if i % 2 else "assistant", f"turn {i}", 70) for i in range(1, 49)]
    runs = chunks(gap, 1024)
    assert [m.seq for run in runs for m in run] == list(range(1, 49))  # nothing lost or moved
    assert all(sum(m.tokens for m in run) <= 1024 for run in runs)
    assert len(runs) == 4  # 14 messages (980 tokens) fit a run


def test_a_message_longer_than_a_run_is_cut_to_fit_with_its_start_kept() -> None:
    huge = message(2, "user", "My dog is called Pixel. " + "blah " * 5000, 6000)
    runs = chunks([message(1, "user", "hi", 3), huge, message(3, "assistant", "ok", 3)], 512)
    assert [[m.seq for m in run] for run in runs] == [[1], [2], [3]]
    cut = runs[1][0]
    assert cut.tokens == 512 and cut.content.startswith("My dog is called Pixel.")
    assert len(cut.content) <= 512 * 3 + 4


def test_what_the_user_said_of_themselves_is_kept_in_the_third_person() -> None:
    turns = [
        message(1, "user", "Hi! My dog is called Pixel and she is a beagle.", 20),
        message(2, "assistant", "My favourite dog is a poodle.", 10),  # not the user's
        message(3, "user", "What should I pack for Rome?", 10),  # a question states nothing
    ]
    assert stated([], turns) == ["The user's dog is called Pixel and she is a beagle."]
    # Folding again keeps what was said before and adds nothing twice.
    again = stated(["The user's dog is called Pixel and she is a beagle."], turns)
    assert again == ["The user's dog is called Pixel and she is a beagle."]


def test_statements_past_the_cap_drop_the_oldest_first() -> None:
    turns = [message(i, "user", f"My number {i} is {i * 7}.", 10) for i in range(1, 80)]
    kept = stated([], turns)
    assert sum(len(s) + 1 for s in kept) <= MAX_STATED_CHARS
    assert kept[-1] == "The user's number 79 is 553."
    assert "The user's number 1 is 7." not in kept
    assert compose(kept, "They talked.").splitlines()[1] == "They talked."


def test_an_echo_of_the_prompt_and_repeated_sentences_are_cut() -> None:
    written = (
        "The user plans a train journey. The user plans a train journey. They like Rome.\n\n"
        "New messages:\nuser: Tell me more"
    )
    assert cleaned(written) == "The user plans a train journey. They like Rome."
    assert cleaned("Previous summary: nothing") == ""
