"""The gateway's own wire models: OpenAI chat with the platform's extensions."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from common.contracts.openai import ChatCompletionRequest

__all__ = ["AUTO_MODEL", "GatewayChatRequest"]

# The model id that runs the whole pipeline (router_svc) instead of one model.
AUTO_MODEL = "auto"


class GatewayChatRequest(ChatCompletionRequest):
    """OpenAI `POST /v1/chat/completions` plus `session_id` (DESIGN.md, gateway)."""

    session_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
