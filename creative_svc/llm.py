"""The model ideation and critique think with (moe_svc through `common.chat.ChatClient`).

Ideation sees only this protocol, so unit tests drive it with a scripted model.
"""

from __future__ import annotations

from typing import Any, Protocol

from common.chat import Completion

__all__ = ["ChatModel"]


class ChatModel(Protocol):
    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
    ) -> Completion: ...
