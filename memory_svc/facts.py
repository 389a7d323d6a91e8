"""Facts about the user, extracted from their messages for long-term memory (as mem0 does).

Three forms (`MEMORY_EXTRACT_FORM`), measured against each other on a written set by
`python -m bench.memory_extract`:

- `statements` (default): each first-person clause of the message is turned to the
  third person by rule ("I'm vegetarian" -> "The user is vegetarian"), and the model,
  decoding under a JSON schema whose items are those statements (an enum), keeps the
  lasting facts. Nothing can be invented: every fact is the user's own words.
- `schema`: the model writes the facts itself, under a JSON schema
  (`{"facts": ["The user ..."]}`), so the reply always parses.
- `lines`: free text, one fact a line (the form before constrained decoding).

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
from typing import Any, Literal, Protocol

from common.chat import ChatClient
from common.errors import ServiceError

__all__ = [
    "FACTS_SCHEMA",
    "ExtractForm",
    "ExtractionUnavailable",
    "FactExtractor",
    "Facts",
    "MoeFactExtractor",
    "first_person_statements",
    "grounded_facts",
    "speaks_of_self",
]

ExtractForm = Literal["statements", "schema", "lines"]

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

STATEMENTS_INSTRUCTION = (
    "You keep a long-term memory about the user. You are given a message the user wrote and "
    "the statements it makes about the user. Keep only the statements that are lasting facts "
    "about the user (name, home, work, family, health, preferences, plans, possessions); drop "
    'wishes, questions and passing remarks. Reply in JSON: {"facts": [the statements kept]}.'
)
# (message, its statements, the ones kept)
STATEMENT_EXAMPLES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "I'm Tom, a teacher from Leeds, and I wonder if it will rain.",
        (
            "The user is Tom.",
            "The user is a teacher from Leeds.",
            "The user wonders if it will rain.",
        ),
        ("The user is Tom.", "The user is a teacher from Leeds."),
    ),
    ("I think that film was long.", ("The user thinks that film was long.",), ()),
    (
        "My wife and I love hiking.",
        ("The user's wife.", "The user loves hiking."),
        ("The user's wife.", "The user loves hiking."),
    ),
)
MAX_STATEMENTS = 12

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


_SENTENCE_END = re.compile(r"(?<=[.;!?])\s+")
# A clause ends at a sentence mark, or at "and/so/but" when a first-person subject follows.
_CLAUSE_BREAK = re.compile(r"[.;!]|,?\s*\b(?:and|so|but)\s+(?=(?:i|i'm|my|we|our)\b)", re.I)
_THIRD_PERSON = (
    (re.compile(r"\b(?:I'm|I am|Im)\b", re.I), "the user is"),
    (re.compile(r"\b(?:I've)\b", re.I), "the user has"),
    (re.compile(r"\b(?:I'd)\b", re.I), "the user would"),
    (re.compile(r"\b(?:I'll)\b", re.I), "the user will"),
    (re.compile(r"\bI\b"), "the user"),
    (re.compile(r"\b(?:my|our)\b", re.I), "the user's"),
    (re.compile(r"\b(?:we're|we are)\b", re.I), "the user and others are"),
    (re.compile(r"\bwe\b", re.I), "the user and others"),
    (re.compile(r"\b(?:me|us|myself)\b", re.I), "the user"),
)
_IRREGULAR = {"have": "has", "do": "does", "go": "goes", "am": "is", "are": "is"}
_ADVERB = frozenset({"just", "also", "still", "often", "always", "never", "usually", "really"})
_NOT_A_VERB = frozenset({
    "is", "was", "has", "had", "can", "could", "will", "would", "should", "and", "or", "a",
    "an", "the", "to", "in", "on", "at", "for", "of", "with", "as",
})  # fmt: skip
# A statement about oneself has a first-person subject ("Give me a recipe" has none).
_SUBJECT = frozenset({"i", "i'm", "i've", "i'd", "i'll", "im", "my", "we", "we're", "we've", "our"})
_GREETING = re.compile(r"^(?:hi|hello|hey|well|so|ok|okay)\b[,!]?\s*", re.I)


def _past(word: str) -> bool:
    return word.endswith("ed") and not word.endswith("eed")


def _third_person_verb(words: list[str], i: int) -> None:
    """Conjugate the verb after "the user" at words[i] (skipping one adverb) in place."""
    if i < len(words) and (words[i] in _ADVERB or words[i].endswith("ly")):
        i += 1
    if i >= len(words):
        return
    word = words[i]
    if word in _NOT_A_VERB or not word.isalpha() or not word.islower() or _past(word):
        return
    if word in _IRREGULAR:
        words[i] = _IRREGULAR[word]
    elif word.endswith("y") and word[-2:-1] not in set("aeiou"):
        words[i] = word[:-1] + "ies"
    elif word.endswith(("s", "sh", "ch", "x", "o")):
        words[i] = word + "es"
    else:
        words[i] = word + "s"


def first_person_statements(text: str) -> list[str]:
    """Each first-person clause of the text's statements (questions aside), in the third
    person: "I'm Maria and I work as a nurse" -> "The user is Maria.", "The user works as
    a nurse." The user's own words, so nothing in them is invented."""
    statements = [x for x in _SENTENCE_END.split(text.strip()) if not x.endswith("?")]
    found: list[str] = []
    for clause in _CLAUSE_BREAK.split(" ".join(statements)):
        clause = _GREETING.sub("", clause.strip(" ,")).replace("\u2019", "'")
        if not clause or clause.split()[0].lower().strip(",") not in _SUBJECT:
            continue
        for pattern, replacement in _THIRD_PERSON:
            clause = pattern.sub(replacement, clause)
        words = clause.split()
        for i in range(len(words) - 1):
            if words[i].lower() == "the" and words[i + 1] == "user":
                _third_person_verb(words, i + 2)
        sentence = " ".join(words)
        sentence = sentence[0].upper() + sentence[1:] + "."
        if sentence not in found:
            found.append(sentence)
    return found[:MAX_STATEMENTS]


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


def _schema_of(items: dict[str, Any]) -> dict[str, Any]:
    schema = {**FACTS_SCHEMA, "properties": {"facts": {**FACTS_SCHEMA["properties"]["facts"]}}}
    schema["properties"]["facts"]["items"] = items
    return {
        "type": "json_schema",
        "json_schema": {"name": "user_facts", "schema": schema, "strict": True},
    }


class MoeFactExtractor:
    """Facts from an OpenAI-compatible chat model in one of the three forms."""

    def __init__(self, chat: ChatClient, *, form: ExtractForm = "statements") -> None:
        self._chat = chat
        self.form = form

    @property
    def model(self) -> str:
        return self._chat.name

    def prompt(self, texts: Sequence[str], statements: Sequence[str] = ()) -> list[dict[str, str]]:
        source = "\n".join(texts)[-MAX_SOURCE_CHARS:]
        if self.form == "statements":
            messages = [{"role": "system", "content": STATEMENTS_INSTRUCTION}]
            for said, offered, kept in STATEMENT_EXAMPLES:
                messages += [
                    {"role": "user", "content": _offer(said, offered)},
                    {"role": "assistant", "content": json.dumps({"facts": list(kept)})},
                ]
            messages.append({"role": "user", "content": _offer(source, statements)})
            return messages
        constrained = self.form == "schema"
        messages = [
            {"role": "system", "content": INSTRUCTION + (JSON_FORM if constrained else LINES_FORM)}
        ]
        for said, facts in EXAMPLES:
            if constrained:
                reply = json.dumps({"facts": list(facts)})
            else:
                reply = "\n".join(f"- {f}" for f in facts) or "NONE"
            messages += [{"role": "user", "content": said}, {"role": "assistant", "content": reply}]
        messages.append({"role": "user", "content": source})
        return messages

    async def read(self, texts: Sequence[str]) -> list[str]:
        """The facts as the model gave them, unchecked; raises ExtractionUnavailable."""
        statements: list[str] = []
        response_format: dict[str, Any] | None = None
        if self.form == "statements":
            statements = [s for t in texts for s in first_person_statements(t)][:MAX_STATEMENTS]
            if not statements:
                return []
            response_format = _schema_of({"enum": statements})
        elif self.form == "schema":
            response_format = RESPONSE_FORMAT
        try:
            completion = await self._chat.complete(
                self.prompt(texts, statements),
                max_tokens=48 * MAX_FACTS,
                temperature=0,
                response_format=response_format,
            )
        except ServiceError as exc:
            raise ExtractionUnavailable(f"the model could not extract facts: {exc}") from exc
        if self.form == "lines":
            return _from_lines(completion.text)
        return _from_json(completion.text)

    async def extract(self, texts: Sequence[str]) -> Facts:
        """The checked facts of the texts in which the user speaks of themselves."""
        texts = [t for t in texts if speaks_of_self(t)]
        if not texts:
            return Facts([], None, [])
        kept, dropped = grounded_facts(await self.read(texts), "\n".join(texts))
        if dropped:
            logger.info("facts dropped", extra={"dropped": len(dropped), "kept": len(kept)})
        return Facts(kept, self._chat.name, dropped)


def _offer(message: str, statements: Sequence[str]) -> str:
    listed = "\n".join(f"- {s}" for s in statements)
    return f"Message: {message}\nStatements:\n{listed}"
