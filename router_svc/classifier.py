"""Intent classification of one user turn, with the conversation as context for follow-ups.

A short turn such as "and in Celsius?" says little on its own; the turn
before it says what it continues. For a turn of at most
`follow_up_max_words` words with earlier user turns, the classifier also
scores the last user turns joined with it (one batch, one forward pass) and
keeps whichever reading is more confident: "thanks!" stays small talk, while
"what about Paris?" after a time-zone question becomes a tool request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from common.contracts.router import Intent
from router_svc.intent_head import IntentHead

__all__ = ["Embedder", "IntentClassifier", "IntentPrediction"]

_WORD = re.compile(r"\w+")


class Embedder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class IntentPrediction:
    intent: Intent
    confidence: float
    scores: dict[str, float]
    # The earlier turns decided the reading of a short follow-up.
    context_used: bool


class IntentClassifier:
    def __init__(
        self,
        embedder: Embedder,
        head: IntentHead,
        *,
        follow_up_max_words: int = 6,
        context_turns: int = 1,
        max_context_chars: int = 1000,
    ) -> None:
        self.embedder = embedder
        self.head = head
        self.follow_up_max_words = follow_up_max_words
        self.context_turns = context_turns
        self.max_context_chars = max_context_chars

    def is_follow_up(self, text: str) -> bool:
        return len(_WORD.findall(text)) <= self.follow_up_max_words

    def context_text(self, text: str, history: Sequence[tuple[str, str]]) -> str | None:
        """The last user turns joined with `text`, or None when there are none."""
        previous = [content.strip() for role, content in history if role == "user"]
        previous = [p for p in previous if p][-self.context_turns :] if self.context_turns else []
        if not previous:
            return None
        joined = " ".join(previous)[-self.max_context_chars :]
        return f"{joined} {text.strip()}"

    def classify(self, text: str, history: Sequence[tuple[str, str]] = ()) -> IntentPrediction:
        """The intent of `text`; `history` is (role, content) pairs, oldest first."""
        context = self.context_text(text, history) if self.is_follow_up(text) else None
        texts = [text] if context is None else [text, context]
        probs = self.head.probabilities(self.embedder.encode(texts))  # (1 or 2, K)
        row = 0
        if context is not None and probs[1].max() > probs[0].max():
            row = 1
        best = int(probs[row].argmax())
        intent: Intent = self.head.labels[best]  # type: ignore[assignment]
        labels = self.head.labels
        scores = {label: round(float(p), 4) for label, p in zip(labels, probs[row], strict=True)}
        return IntentPrediction(intent, float(probs[row, best]), scores, context_used=row == 1)
