"""The model the strategies think with.

Strategies see only the `ChatModel` protocol, so unit tests drive them with a
scripted model and the service with moe_svc through `common.chat.ChatClient`
(or anything that speaks the OpenAI protocol, vLLM included). A `response_format`
(OpenAI's `json_schema`) asks the server to decode under that schema; a server
may ignore it, so a caller still reads the reply as untrusted text.
"""

from __future__ import annotations

from typing import Any, Protocol

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
        response_format: dict[str, Any] | None = None,
        grammar: str | None = None,
    ) -> Completion: ...
