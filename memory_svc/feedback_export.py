"""A tenant's rated answers as a training set: KTO examples, DPO pairs, or the raw records.

Only answers (`message_role` assistant) whose prompt was kept are examples; records
stored before prompts were kept appear in `raw` only. Lines are JSON, one per example,
streamed as the tenant's records are read (oldest first, a batch at a time).

DPO pairs come from two sources, each pair once:

- a pick: the user regenerated an answer and chose one (`preferred_over`);
- ratings: answers to the same prompt in the same context rated 1 and -1. Each
  prompt's liked and disliked answers are paired in turn until every one of them is
  in a pair (not every combination: that would weigh one prompt quadratically).

Pairs from ratings need every prompt's answers seen first: they are held in memory,
the text of the tenant's rated answers, and written at the end.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from common.contracts.memory import DpoPair, Feedback, FeedbackFormat, FeedbackTurn, KtoExample
from memory_svc.feedback import FeedbackStore
from memory_svc.keys import KeySpace

__all__ = ["EXPORT_MEDIA_TYPE", "export_lines"]

EXPORT_MEDIA_TYPE = "application/x-ndjson"


def _prompt(record: Feedback) -> list[FeedbackTurn]:
    assert record.prompt is not None
    return [*record.context, FeedbackTurn(role="user", content=record.prompt)]


def _answer(content: str) -> list[FeedbackTurn]:
    return [FeedbackTurn(role="assistant", content=content)]


def _line(example: KtoExample | DpoPair | Feedback) -> bytes:
    return (json.dumps(example.model_dump(mode="json"), ensure_ascii=False) + "\n").encode()


def _trainable(record: Feedback) -> bool:
    # An answer with no text (every sentence dropped as unsupported, say) teaches nothing.
    return (
        record.message_role == "assistant"
        and record.prompt is not None
        and bool(record.message_content.strip())
    )


# (session id, message id, text) of a rated answer: message ids are unique per session.
_Rated = tuple[str, str, str]


@dataclass
class _Answers:
    """One prompt's rated answers."""

    liked: list[_Rated] = field(default_factory=list)
    disliked: list[_Rated] = field(default_factory=list)


class _Pairs:
    def __init__(self) -> None:
        self.prompts: dict[str, tuple[list[FeedbackTurn], _Answers]] = {}
        # (session, chosen id, rejected id): a pair written once whatever made it.
        self.written: set[tuple[str, str, str]] = set()

    def picked(self, record: Feedback) -> DpoPair | None:
        rejected = record.rejected_content
        if record.preferred_over is None or rejected is None or not rejected.strip():
            return None
        self.written.add((record.session_id, record.message_id, record.preferred_over))
        return DpoPair(
            prompt=_prompt(record),
            chosen=_answer(record.message_content),
            rejected=_answer(rejected),
        )

    def rated(self, record: Feedback) -> None:
        prompt = _prompt(record)
        key = json.dumps([turn.model_dump() for turn in prompt])
        answers = self.prompts.setdefault(key, (prompt, _Answers()))[1]
        side = answers.liked if record.rating == 1 else answers.disliked
        side.append((record.session_id, record.message_id, record.message_content))

    def from_ratings(self) -> list[DpoPair]:
        pairs: list[DpoPair] = []
        for prompt, answers in self.prompts.values():
            liked, disliked = answers.liked, answers.disliked
            if not (liked and disliked):
                continue
            for i in range(max(len(liked), len(disliked))):
                chosen_session, chosen_id, chosen = liked[i % len(liked)]
                rejected_session, rejected_id, rejected = disliked[i % len(disliked)]
                already = chosen_session == rejected_session and (
                    (chosen_session, chosen_id, rejected_id) in self.written
                )
                if already or chosen == rejected:
                    continue
                pairs.append(
                    DpoPair(prompt=prompt, chosen=_answer(chosen), rejected=_answer(rejected))
                )
        return pairs


async def export_lines(
    store: FeedbackStore, space: KeySpace, format: FeedbackFormat
) -> AsyncIterator[bytes]:
    """`space`'s tenant's feedback in `format`, one JSON line per example."""
    pairs = _Pairs()
    async for batch in store.each(space):
        for record in batch:
            if format == "raw":
                yield _line(record)
            elif not _trainable(record):
                continue
            elif format == "kto":
                yield _line(
                    KtoExample(
                        prompt=_prompt(record),
                        completion=_answer(record.message_content),
                        label=record.rating == 1,
                    )
                )
            else:
                picked = pairs.picked(record)
                if picked is not None:
                    yield _line(picked)
                pairs.rated(record)
    for pair in pairs.from_ratings():
        yield _line(pair)
