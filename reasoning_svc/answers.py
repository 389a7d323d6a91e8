"""Final answers out of free text, and the normal form that votes and evaluations compare.

`extract_answer` reads, in order of trust: an `Answer:` line (the format the
prompts ask for, last one wins), "the answer is ...", a boxed answer, and
otherwise the last number in the text, then its last non-empty line.
`normalize_answer` makes "$1,200.00", "1200" and "1200 dollars" the same
vote, and "Yes." and "yes" too.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["extract_answer", "last_number", "normalize_answer", "same_answer"]

_ANSWER_LINE = re.compile(r"(?im)^\s*(?:\*\*)?(?:final\s+)?answer\s*(?:\*\*)?\s*[:=]\s*(.+?)\s*$")
_ANSWER_IS = re.compile(r"(?i)\bthe\s+(?:final\s+)?answer\s+is\s*[:=]?\s*(.+?)(?:\.\s|\.$|\n|$)")
_BOXED = re.compile(r"\\boxed\{([^{}]+)\}")
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_PURE_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?(?:/\d+)?$")


def extract_answer(text: str) -> str:
    """The final answer a completion states; "" when it states nothing."""
    lines = _ANSWER_LINE.findall(text)
    if lines:
        return str(lines[-1]).strip().strip("*").strip()
    said = _ANSWER_IS.findall(text)
    if said:
        return str(said[-1]).strip()
    boxed = _BOXED.findall(text)
    if boxed:
        return str(boxed[-1]).strip()
    number = last_number(text)
    if number is not None:
        return number
    rest = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return rest[-1] if rest else ""


def last_number(text: str) -> str | None:
    numbers = _NUMBER.findall(text)
    return numbers[-1].replace("$", "").replace(",", "") if numbers else None


def _as_number(text: str) -> str | None:
    candidate = text.replace(",", "").replace("$", "").replace("%", "").strip()
    if not _PURE_NUMBER.match(candidate):
        return None
    try:
        value = Fraction(candidate)
    except (ValueError, ZeroDivisionError):
        return None
    if value.denominator == 1:
        return str(value.numerator)
    # Decimals compare at a precision that ignores float noise (0.30000000000000004).
    return f"{float(value):.6g}"


def normalize_answer(answer: str) -> str:
    """A canonical form: numbers as exact integers or 6 significant digits, else folded text."""
    text = answer.strip().strip(".").strip()
    number = _as_number(text)
    if number is not None:
        return number
    # "12 apples", "$12 per hour": an answer that leads with one number is that number.
    lead = re.match(r"^\$?(-?\d[\d,]*(?:\.\d+)?)\b", text)
    if lead:
        number = _as_number(lead.group(1))
        if number is not None:
            return number
    folded = re.sub(r"[^\w\s-]", "", text.lower())
    return " ".join(folded.split())


def same_answer(predicted: str, expected: str) -> bool:
    """Whether two answers agree; an expected number also matches a text ending in it."""
    a, b = normalize_answer(predicted), normalize_answer(expected)
    if a == b:
        return True
    if _as_number(expected) is not None:
        number = last_number(predicted)
        return number is not None and normalize_answer(number) == b
    return bool(b) and b in a.split() if " " not in b else b in a
