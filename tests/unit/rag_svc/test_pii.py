"""PII redaction: emails, phone numbers, Luhn-valid card numbers; the rest untouched."""

from __future__ import annotations

import pytest

from common.pii import luhn_valid, redact_pii


def test_emails_phones_and_cards_are_replaced() -> None:
    text = (
        "Mail john.doe+news@mail.example.co.uk, call +1 (555) 123-4567 or 020 7946 0958, "
        "pay with 4111 1111 1111 1111 or 5500-0000-0000-0004."
    )
    result = redact_pii(text)

    assert result.text == ("Mail [EMAIL], call [PHONE] or [PHONE], pay with [CARD] or [CARD].")
    assert (result.emails, result.phones, result.cards, result.total) == (1, 2, 2, 5)


@pytest.mark.parametrize(
    "text",
    [
        "The card-like number 4111 1111 1111 1112 fails the Luhn check.",
        "From 2004-2005 output rose 3.5%; on 2021-03-04 at 10:30 the index hit 1,234,567.",
        "ISBN 978-3-16-148410-0, order 1234567890123, room 12, version 1.2.3.",
        "Write to me at home, not at work.",
    ],
)
def test_numbers_that_are_not_pii_stay(text: str) -> None:
    result = redact_pii(text)
    assert (result.text, result.total) == (text, 0)


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("0")
