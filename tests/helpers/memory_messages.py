"""A stored memory_svc message for unit tests of the code that reads history."""

from __future__ import annotations

from common.contracts.memory import Message


def stored_message(
    seq: int, role: str, content: str, tokens: int, created_at: float = 0.0
) -> Message:
    """Message `seq` of session "s", taking `tokens` tokens of the model's prompt."""
    return Message(
        id=f"m{seq}",
        seq=seq,
        session_id="s",
        role=role,
        content=content,
        created_at=created_at,
        tokens=tokens,
    )
