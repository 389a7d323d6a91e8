"""The model the strategies think with.

Strategies see only the `ChatModel` protocol, so unit tests drive them with a
scripted model and the service with moe_svc through `common.chat.ChatClient`
(or anything that speaks the OpenAI protocol, vLLM included).
"""

from __future__ import annotations

from typing import Protocol

from common.chat import Completion, Message

__all__ = ["ChatModel", "Completion", "Message"]


class ChatModel(Protocol):
    name: str

    async def complete(
        self,
        messages: list[Message],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        stop: list[str] | None = None,
    ) -> Completion: ...
