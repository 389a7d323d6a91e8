"""The self-RAG gate: does a question need retrieval at all?

Self-RAG (Asai et al. 2023) lets the model decide when to retrieve and
critiques what it retrieves. Here the decision is made before generation, from
the question's form (greetings, thanks, arithmetic, creative writing and
questions about the assistant need no documents) and from the collection (a
question nothing in it resembles); sources the cross-encoder judges irrelevant
are dropped afterwards (see `answering`).
"""

from __future__ import annotations

import re

__all__ = ["retrieval_not_needed"]

_SMALL_TALK = re.compile(
    r"^(?:hi|hello|hey|hiya|howdy|yo|greetings|good (?:morning|afternoon|evening|night)|"
    r"thanks?(?: you)?(?: so much| a lot| very much)?|thank you|cheers|bye|goodbye|"
    r"see you(?: later)?|how are you(?: doing)?(?: today)?|nice to meet you)"
    r"(?: there| all| everyone| again)?$"
)
_ABOUT_ASSISTANT = re.compile(
    r"^(?:who|what) are you|^what(?:'s| is) your name|^what can you do|^are you (?:a |an )?"
    r"(?:bot|robot|ai|human)"
)
_ARITHMETIC = re.compile(
    r"^(?:what is|what's|calculate|compute|how much is|solve)?\s*[\d\s.+\-*/x×÷^()%=]+$"
)
_CREATIVE = re.compile(
    r"^(?:please )?(?:write|compose|draft|make up|invent|tell me)\b.*\b(?:poem|haiku|story|"
    r"limerick|song|lyrics|joke|slogan|sonnet|riddle)s?\b"
)


def retrieval_not_needed(question: str) -> str | None:
    """Why `question` needs no documents, or None when it may."""
    text = " ".join(re.sub(r"[!?.,;:]+", " ", question.lower()).split())
    if _SMALL_TALK.match(text):
        return "small talk needs no documents"
    if _ABOUT_ASSISTANT.match(text):
        return "a question about the assistant needs no documents"
    if any(ch.isdigit() for ch in text) and _ARITHMETIC.match(text):
        return "arithmetic needs no documents"
    if _CREATIVE.match(text):
        return "creative writing needs no documents"
    return None
