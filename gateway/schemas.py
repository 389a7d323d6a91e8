"""The gateway's own wire models: OpenAI chat with the platform's extensions."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from common.caller import TENANT_PATTERN
from common.contracts.memory import ID_PATTERN
from common.contracts.openai import ChatCompletionRequest

__all__ = ["AUTO_MODEL", "FeedbackQuery", "GatewayChatRequest"]

# The model id that runs the whole pipeline (router_svc) instead of one model.
AUTO_MODEL = "auto"


class GatewayChatRequest(ChatCompletionRequest):
    """OpenAI `POST /v1/chat/completions` plus `session_id` (DESIGN.md, gateway)."""

    session_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None


def _rating(value: int) -> int:
    if value not in (1, -1):
        raise ValueError("rating must be 1 or -1")
    return value


class FeedbackQuery(BaseModel):
    """The query of `GET /v1/feedback`: what memory_svc documents, nothing else passes."""

    model_config = ConfigDict(extra="forbid")

    session_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    user_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    rating: Annotated[int, AfterValidator(_rating)] | None = None
    # Another tenant's feedback: admin keys only (memory_svc decides).
    tenant: Annotated[str, Field(pattern=TENANT_PATTERN)] | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] | None = None
    offset: Annotated[int, Field(ge=0)] | None = None
