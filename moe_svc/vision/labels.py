"""Which Fashion-MNIST garment an answer names (the vision evaluation's reading of it)."""

from __future__ import annotations

import re

__all__ = ["garment_named"]

# Label order as Fashion-MNIST's (creative_svc.captions.CLASS_NAMES); the words that name
# each garment in an answer. "t-shirt" is read before "shirt", "ankle boot" before "boot".
_WORDS: tuple[tuple[int, str], ...] = (
    (0, r"t[- ]?shirts?|tees?"),
    (1, r"trousers?|pants|jeans"),
    (2, r"pullovers?|sweaters?|jumpers?"),
    (3, r"dress(?:es)?"),
    (4, r"coats?|jackets?"),
    (5, r"sandals?"),
    (6, r"shirts?|blouses?"),
    (7, r"sneakers?|trainers?"),
    (8, r"bags?|handbags?|purses?"),
    (9, r"(?:ankle )?boots?"),
)
_PATTERN = re.compile("|".join(f"(?P<g{label}>\\b(?:{words})\\b)" for label, words in _WORDS))


def garment_named(answer: str) -> int | None:
    """The label of the one garment `answer` names; None for none or several."""
    named = {
        int(name[1:])
        for match in _PATTERN.finditer(answer.lower())
        for name, text in match.groupdict().items()
        if text
    }
    return named.pop() if len(named) == 1 else None
