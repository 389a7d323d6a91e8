"""The messages rag_svc sends to moe_svc: answers with citations, HyDE, decomposition."""

from __future__ import annotations

import re

from common.contracts.rag import AnswerSource

__all__ = [
    "answer_messages",
    "decompose_messages",
    "direct_messages",
    "hyde_messages",
    "parse_sub_questions",
]

Messages = list[dict[str, str]]

ANSWER_SYSTEM = (
    "You answer questions using only the numbered sources below. After each sentence, "
    "cite the sources that support it with their numbers in square brackets, like [1] or "
    "[2][3]. Cite only numbers that appear below. If the sources do not contain the "
    "answer, say that you do not know."
)
HYDE_SYSTEM = (
    "Write a short passage (two or three sentences) that would answer the question, as an "
    "encyclopedia would. Write only the passage."
)
DECOMPOSE_SYSTEM = (
    "Break the question into the simpler sub-questions that must be answered first, one "
    "per line, at most {n}. Write only the sub-questions."
)


def _source_block(source: AnswerSource) -> str:
    title = source.metadata.get("title")
    heading = (
        f"[{source.number}] {title}" if isinstance(title, str) and title else (f"[{source.number}]")
    )
    return f"{heading}\n{source.text}"


def answer_messages(question: str, sources: list[AnswerSource]) -> Messages:
    context = "\n\n".join(_source_block(s) for s in sources)
    return [
        {"role": "system", "content": ANSWER_SYSTEM},
        {"role": "user", "content": f"Sources:\n\n{context}\n\nQuestion: {question}"},
    ]


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
