"""Facts about the user, extracted from their messages for long-term memory (as mem0 does).

The model is asked for the facts in the user's words and answers under a JSON schema
(`{"facts": [...]}`, each fact a sentence about "The user"), so the reply always
parses: constrained decoding (moe_svc's `response_format`) instead of reading a list
out of free text. `constrained=False` keeps the free-text form (one fact a line) for
comparison: `python -m bench.memory_extract` measures both on a written set.

Only messages in which the user speaks of themselves (a first-person word: I, my, me,
we, our) go to the model; a question about the world states no fact about its asker.
What the model returns is checked before anything is stored: a fact must be about the
user, must share a content word with what the user wrote (a fact with nothing from the
messages is the model's invention), and repeats are dropped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from common.chat import ChatClient
from common.errors import ServiceError

__all__ = [
    "FACTS_SCHEMA",
    "ExtractionUnavailable",
    "FactExtractor",
    "Facts",
    "MoeFactExtractor",
    "grounded_facts",
    "speaks_of_self",
]

logger = logging.getLogger("memory_svc.facts")

MAX_FACTS = 8
MAX_FACT_CHARS = 200
# The user's messages sent to the model are cut to this many characters (newest kept).
MAX_SOURCE_CHARS = 4000

INSTRUCTION = (
    "You extract facts about the user from their messages, for a long-term memory. A fact "
    "is something true about the user that will still matter later: their name, where they "
    "live, their work, family, preferences, plans, health, possessions. Write each fact as a "
    "short sentence starting with 'The user'. Questions, requests and general knowledge are "
    "not facts about the user: then there are none."
)
JSON_FORM = ' Reply in JSON: {"facts": ["The user ...", ...]}, or {"facts": []}.'
LINES_FORM = " Reply with one fact a line, each starting with '- The user', or NONE."

# Worked examples sent as earlier turns: a small model copies their form.
EXAMPLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "I'm Tom, a teacher from Leeds.",
        ("The user's name is Tom.", "The user is a teacher.", "The user is from Leeds."),
    ),
    ("How tall is Mount Everest?", ()),
    (
        "My wife and I love hiking, and I drive a Toyota.",
        ("The user is married.", "The user loves hiking.", "The user drives a Toyota."),
    ),
    ("Translate 'good morning' into French.", ()),
)

FACTS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "facts": {
            "type": "array",
            "items": {"type": "string", "pattern": "^The user", "maxLength": MAX_FACT_CHARS},
            "maxItems": MAX_FACTS,
        }
    },
    "required": ["facts"],
    "additionalProperties": False,
}
RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "user_facts", "schema": FACTS_SCHEMA, "strict": True},
}

_WORD = re.compile(r"[a-z0-9']+")
# Words that say nothing about which fact it is: a fact must share another one with the source.
# fmt: off
_STOP = frozenset({
    "the", "user", "user's", "users", "is", "are", "was", "were", "has", "have", "had", "a",
    "an", "and", "or", "of", "to", "in", "on", "at", "for", "with", "from", "by", "as", "be",
    "been", "being", "their", "they", "them", "this", "that", "it", "its", "his", "her", "he",
    "she", "i", "my", "me", "mine", "i'm", "am", "do", "does", "not", "no", "name", "likes",
    "like", "loves", "love", "wants",
})
_FIRST_PERSON = frozenset({
    "i", "i'm", "i've", "i'd", "i'll", "im", "me", "my", "mine", "myself", "we", "we're",
    "we've", "our", "ours", "us",
})
# fmt: on


class ExtractionUnavailable(Exception):
    """The model could not extract facts (down, timing out, or answering nonsense)."""


@dataclass(frozen=True)
class Facts:
    facts: list[str]
    # The model asked; None when no text spoke of the user (the model is not asked then).
    model: str | None
    # What the model wrote that the checks dropped (not about the user, not grounded, repeats).
    dropped: list[str]


class FactExtractor(Protocol):
    async def extract(self, texts: Sequence[str]) -> Facts: ...


def _content_words(text: str) -> set[str]:
    return {w.strip("'") for w in _WORD.findall(text.lower())} - _STOP - {""}


def speaks_of_self(text: str) -> bool:
    """Whether the text has a first-person word: only then can it state a fact about its writer."""
    return any(w in _FIRST_PERSON for w in _WORD.findall(text.lower().replace("\u2019", "'")))


def grounded_facts(candidates: Sequence[str], source: str) -> tuple[list[str], list[str]]:
    """(kept, dropped): facts about the user that share a content word with the source."""
    source_words = _content_words(source)
    kept: list[str] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for raw in candidates:
        fact = " ".join(raw.split())[:MAX_FACT_CHARS]
        key = fact.lower().rstrip(".")
        about_user = key.startswith("the user")
        if not fact or key in seen or not about_user or not (_content_words(fact) & source_words):
            dropped.append(raw)
            continue
        seen.add(key)
        kept.append(fact if fact.endswith(".") else fact + ".")
    return kept[:MAX_FACTS], dropped


def _from_lines(text: str) -> list[str]:
    facts = []
    for line in text.splitlines():
        line = line.strip().lstrip("-*\u2022").strip()
        if line and line.upper() != "NONE":
            facts.append(line)
    return facts


def _from_json(text: str) -> list[str]:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExtractionUnavailable(f"the model's facts are not JSON: {exc}") from exc
    facts = body.get("facts") if isinstance(body, dict) else None
    if not isinstance(facts, list):
        raise ExtractionUnavailable("the model's reply has no `facts` list")
    return [str(f) for f in facts if isinstance(f, str)]


class MoeFactExtractor:
    """Facts from an OpenAI-compatible chat model, under a JSON schema when `constrained`."""

    def __init__(self, chat: ChatClient, *, constrained: bool = True) -> None:
        self._chat = chat
        self.constrained = constrained

    @property
    def model(self) -> str:
        return self._chat.name

    def prompt(self, texts: Sequence[str]) -> list[dict[str, str]]:
        form = JSON_FORM if self.constrained else LINES_FORM
        messages = [{"role": "system", "content": INSTRUCTION + form}]
        for said, facts in EXAMPLES:
            if self.constrained:
                reply = json.dumps({"facts": list(facts)})
            else:
                reply = "\n".join(f"- {f}" for f in facts) or "NONE"
            messages += [{"role": "user", "content": said}, {"role": "assistant", "content": reply}]
        source = "\n".join(texts)[-MAX_SOURCE_CHARS:]
        messages.append({"role": "user", "content": source})
        return messages

    async def read(self, texts: Sequence[str]) -> list[str]:
        """The facts as the model wrote them, unchecked; raises ExtractionUnavailable."""
        try:
            completion = await self._chat.complete(
                self.prompt(texts),
                max_tokens=48 * MAX_FACTS,
                temperature=0,
                response_format=RESPONSE_FORMAT if self.constrained else None,
            )
        except ServiceError as exc:
            raise ExtractionUnavailable(f"the model could not extract facts: {exc}") from exc
        return _from_json(completion.text) if self.constrained else _from_lines(completion.text)

    async def extract(self, texts: Sequence[str]) -> Facts:
        """The checked facts of the texts in which the user speaks of themselves."""
        texts = [t for t in texts if speaks_of_self(t)]
        if not texts:
            return Facts([], None, [])
        kept, dropped = grounded_facts(await self.read(texts), "\n".join(texts))
        if dropped:
            logger.info("facts dropped", extra={"dropped": len(dropped), "kept": len(kept)})
        return Facts(kept, self._chat.name, dropped)
