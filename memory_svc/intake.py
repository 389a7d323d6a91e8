"""Checks and token counts of messages on their way into a session."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from common.contracts.memory import MessageIn
from common.errors import BadRequest, PayloadTooLarge
from memory_svc.tokens import TokenCounter, render_message

__all__ = ["prepare"]


async def prepare(
    messages: Sequence[MessageIn],
    user_id: str | None,
    *,
    max_chars: int,
    counter: TokenCounter,
) -> tuple[list[int], str | None]:
    """Token counts of `messages` and the one user id they name (or None).

    Refuses, before anything is stored, content over `max_chars` (413) and
    messages naming different users (400).
    """
    for i, message in enumerate(messages):
        if len(message.content) > max_chars:
            raise PayloadTooLarge(
                f"Message {i} has {len(message.content)} characters; at most {max_chars} "
                "are accepted.",
                param=f"messages.{i}.content" if len(messages) > 1 else "content",
                code="message_too_large",
            )
    named = {m.user_id for m in messages if m.user_id} | ({user_id} if user_id else set())
    if len(named) > 1:
        raise BadRequest(
            f"One append names several users ({', '.join(sorted(named))}); a session has one.",
            param="user_id",
            code="conflicting_user_ids",
        )
    counts = await asyncio.gather(
        *(counter.count(render_message(m.role, m.content)) for m in messages)
    )
    return list(counts), next(iter(named), None)
