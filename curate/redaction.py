"""PII redaction with the platform's one set of rules (common.pii): records are kept, edited."""

from __future__ import annotations

from common.pii import redact_pii
from curate.pipeline import KEEP, Decision
from curate.records import Record

__all__ = ["PiiRedaction"]


class PiiRedaction:
    """Emails, phone numbers and Luhn-valid card numbers become [EMAIL], [PHONE], [CARD]."""

    name = "pii"

    def __call__(self, record: Record) -> Decision:
        redaction = redact_pii(record.text)
        if not redaction.total:
            return KEEP
        record.text = redaction.text
        return Decision(
            "edit",
            f"{redaction.emails} emails, {redaction.phones} phones, {redaction.cards} cards",
        )
