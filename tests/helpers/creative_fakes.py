"""Scripted stand-in for moe_svc's chat model in creative_svc's unit tests."""

from __future__ import annotations

from typing import Any

from common.chat import Completion
from common.errors import UpstreamUnavailable


class ScriptedChat:
    """Answers the ideation and critique calls in turn from `replies` (None: moe_svc down)."""

    def __init__(self, replies: list[str | None]) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []
        self.formats: list[dict[str, Any] | None] = []
        self.max_tokens: list[int] = []

    async def complete(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
    ) -> Completion:
        self.calls.append(messages)
        self.formats.append(response_format)
        self.max_tokens.append(max_tokens)
        reply = self.replies.pop(0) if self.replies else ""
        if reply is None:
            raise UpstreamUnavailable("moe_svc is down", code="upstream_unavailable")
        return Completion(reply, prompt_tokens=10, completion_tokens=len(reply.split()))
