"""Redaction of personal data: emails, phone numbers, payment card numbers.

The one set of PII rules on the platform: rag_svc redacts documents with it on
ingest and the curation CLI (`curate`) redacts training and knowledge records.

Card numbers are 13-19 digits (spaces or dashes allowed) that pass the Luhn
check, so order numbers and ISBNs of that length survive. Phone numbers need
a `+` country code, a parenthesised area code, or 10-15 digits in separated
groups; years, dates and short numbers are left alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Redaction", "luhn_valid", "redact_pii"]

EMAIL_TOKEN = "[EMAIL]"
PHONE_TOKEN = "[PHONE]"
CARD_TOKEN = "[CARD]"

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,5}\)[\s.-]?)?\d{2,5}(?:[\s.-]\d{2,5}){1,5}(?![\w-])"
    r"|(?<![\w+])\+\d{7,15}(?!\w)"
)


@dataclass(frozen=True)
class Redaction:
    """The redacted text and how many of each kind of personal data were replaced."""

    text: str
    emails: int = 0
    phones: int = 0
    cards: int = 0

    @property
    def total(self) -> int:
        return self.emails + self.phones + self.cards


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (payment card numbers pass it)."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return len(digits) > 1 and total % 10 == 0


def _is_phone(candidate: str) -> bool:
    digits = re.sub(r"\D", "", candidate)
    if candidate.startswith("+") or "(" in candidate:
        return 7 <= len(digits) <= 15
    # Without a country or area code only long numbers read as phones (not dates, years).
    return 10 <= len(digits) <= 15


def redact_pii(text: str) -> Redaction:
    """`text` with emails, card numbers and phone numbers replaced by placeholders."""
    counts = {"cards": 0, "emails": 0, "phones": 0}

    def card(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        if luhn_valid(digits):
            counts["cards"] += 1
            return CARD_TOKEN
        return match.group()

    def email(match: re.Match[str]) -> str:
        counts["emails"] += 1
        return EMAIL_TOKEN

    def phone(match: re.Match[str]) -> str:
        if _is_phone(match.group()):
            counts["phones"] += 1
            return PHONE_TOKEN
        return match.group()

    # Cards first: a card number would otherwise read as a phone number.
    text = _CARD.sub(card, text)
    text = _EMAIL.sub(email, text)
    text = _PHONE.sub(phone, text)
    return Redaction(text, **counts)
