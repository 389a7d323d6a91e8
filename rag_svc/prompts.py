"""The messages rag_svc sends to moe_svc: answers with citations, HyDE, decomposition.

The answer prompt is cut for a 135M model: few sources, each shortened to the
sentences that share the most words with the question (the excerpt), the
question restated last, and an instruction to answer first, in one sentence
that repeats the question's words (which attribution then cites).
"""

from __future__ import annotations

import re

from common.contracts.rag import AnswerSource
from rag_svc.chunking import split_sentences
from rag_svc.indexes import bm25_tokens

__all__ = [
    "answer_messages",
    "decompose_messages",
    "direct_messages",
    "excerpt",
    "extract_answer",
    "hyde_messages",
    "parse_sub_questions",
    "prompt_sources",
]

Messages = list[dict[str, str]]

ANSWER_SYSTEM = (
    "Answer the question using only the sources. Start with the answer: one short "
    "sentence that repeats the words of the question, with the number of its source in "
    "square brackets, like [1]. If the sources do not say, answer that you do not know."
)
# Sources in the answer prompt, and words of each source's excerpt.
PROMPT_SOURCES = 3
EXCERPT_WORDS = 70
# A source scored below this share of the best one's score stays out of the prompt.
RELATIVE_SCORE = 0.5
HYDE_SYSTEM = (
    "Write a short passage (two or three sentences) that would answer the question, as an "
    "encyclopedia would. Write only the passage."
)
DECOMPOSE_SYSTEM = (
    "Break the question into the simpler sub-questions that must be answered first, one "
    "per line, at most {n}. Write only the sub-questions."
)


def excerpt(text: str, question: str, max_words: int = EXCERPT_WORDS, title: str = "") -> str:
    """The chunk's lead sentence and the one sharing most words with `question` (its title's
    words aside: every sentence of the page is about them), grown around it to `max_words`."""
    spans = split_sentences(text)
    sentences = [text[a:b].strip() for a, b in spans] or [text]
    wanted = set(bm25_tokens([question])[0]) - set(bm25_tokens([title])[0])
    overlap = [len(wanted & set(t)) for t in bm25_tokens(sentences)]
    best = max(range(len(sentences)), key=lambda i: (overlap[i], -i))
    chosen = {0, best}
    words = sum(len(sentences[i].split()) for i in chosen)
    low, high = best, best
    while True:
        # Grow around the best sentence, towards the side that shares more with the question.
        sides = [i for i in (high + 1, low - 1) if 0 <= i < len(sentences) and i not in chosen]
        if not sides:
            break
        pick = max(sides, key=lambda i: overlap[i])
        size = len(sentences[pick].split())
        if words + size > max_words:
            break
        words += size
        chosen.add(pick)
        low, high = min(low, pick), max(high, pick)
    out = " ".join(sentences[i] for i in sorted(chosen))
    cut = out.split()
    return out if len(cut) <= max_words else " ".join(cut[:max_words]) + " ..."


def prompt_sources(sources: list[AnswerSource]) -> list[AnswerSource]:
    """The sources the model reads: the best, and those scored at least half as well."""
    if not sources:
        return []
    top = sources[0].score
    return [s for s in sources[:PROMPT_SOURCES] if s.score >= RELATIVE_SCORE * top]


def _source_block(source: AnswerSource, question: str) -> str:
    title = source.title or source.metadata.get("title")
    heading = (
        f"[{source.number}] {title}" if isinstance(title, str) and title else f"[{source.number}]"
    )
    return f"{heading}\n{excerpt(source.text, question, title=title or '')}"


def answer_messages(question: str, sources: list[AnswerSource]) -> Messages:
    context = "\n\n".join(_source_block(s, question) for s in prompt_sources(sources))
    return [
        {"role": "system", "content": ANSWER_SYSTEM},
        {"role": "user", "content": f"Sources:\n\n{context}\n\nQuestion: {question}"},
    ]


_LABEL = re.compile(r"(?im)^\s*(?:final\s+)?answer\s*:\s*")
_RESTATED = re.compile(r"(?i)^the answer is\b")


def extract_answer(reply: str) -> str:
    """The answer in a small model's reply: labels ("Answer:") taken off, and sentences
    that only say "The answer is ..." again dropped (unless nothing else is left)."""
    text = _LABEL.sub("", reply).strip()
    sentences = [text[a:b] for a, b in split_sentences(text)]
    kept = [sentence for sentence in sentences if not _RESTATED.match(sentence)]
    return " ".join(kept) if kept and len(kept) < len(sentences) else text


def direct_messages(question: str) -> Messages:
    return [{"role": "user", "content": question}]


def hyde_messages(question: str) -> Messages:
    return [
        {"role": "system", "content": HYDE_SYSTEM},
        {"role": "user", "content": f"Question: {question}"},
    ]


def decompose_messages(question: str, max_questions: int) -> Messages:
    return [
        {"role": "system", "content": DECOMPOSE_SYSTEM.format(n=max_questions)},
        {"role": "user", "content": f"Question: {question}"},
    ]


_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.):]|q\d+[.):]|sub-?question\s*\d*[.):])\s*", re.I)


def parse_sub_questions(reply: str, question: str, max_questions: int) -> list[str]:
    """The distinct sub-questions of a decomposition reply (the question itself excluded)."""
    seen = {question.strip().lower()}
    out = []
    for line in reply.splitlines():
        text = _LIST_MARKER.sub("", line).strip().strip('"')
        if len(text.split()) < 2 or text.lower() in seen:
            continue
        seen.add(text.lower())
        out.append(text)
        if len(out) == max_questions:
            break
    return out
