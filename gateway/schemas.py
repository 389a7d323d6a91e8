"""The gateway's own wire models: OpenAI chat with the platform's extensions.

Model `auto` answers with OpenAI's `chat.completion` and
`chat.completion.chunk` shapes (`common.contracts.openai`) plus the
extensions: the `pipeline` that ran (router_svc's, with the gateway's
`verification` of the citations), `session_id` and `message_id` (what
`POST /v1/feedback` rates), and `pipeline_event`s that show a stream's
progress. moe_svc's own extensions (`experts`, `token_ids`) are not part of
these answers, and a chunk carries `usage` only when it is the usage chunk.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from common.caller import TENANT_PATTERN
from common.contracts.dispatch_events import RouteEvent, StepEvent
from common.contracts.memory import ID_PATTERN
from common.contracts.openai import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    DeltaMessage,
    Usage,
)
from common.contracts.router import Pipeline

__all__ = [
    "AUTO_MODEL",
    "AutoChoice",
    "AutoChunk",
    "AutoChunkChoice",
    "AutoCompletion",
    "AutoDelta",
    "AutoFinalChunk",
    "AutoProgressChunk",
    "CitationCheck",
    "FeedbackQuery",
    "GatewayChatRequest",
    "Verification",
    "VerifiedPipeline",
]

# The model id that runs the whole pipeline (router_svc) instead of one model.
AUTO_MODEL = "auto"


def _is_none(value: Any) -> bool:
    return value is None


class GatewayChatRequest(ChatCompletionRequest):
    """OpenAI `POST /v1/chat/completions` plus `session_id` (memory_svc's session)."""

    session_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None


# --- model auto's answers -----------------------------------------------------------------


class CitationCheck(BaseModel):
    """A citation the answer kept, with rag_svc's support scores (null: none given)."""

    number: int
    supported: bool | None
    lexical: float | None
    semantic: float | None


class Verification(BaseModel):
    """What the gateway checked of the answer's `[n]` citations."""

    citations: list[CitationCheck]
    # Numbers cited that name no source (taken out of the text, or flagged once streamed).
    removed: list[int]
    # Every kept citation supported and none removed; null for an answer without sources.
    verified: bool | None


class VerifiedPipeline(Pipeline):
    """router_svc's pipeline plus the gateway's verification of the answer."""

    verification: Verification


class AutoChoice(ChatChoice):
    token_ids: None = Field(None, exclude=True)


class AutoCompletion(ChatCompletionResponse):
    """The `chat.completion` of model `auto`."""

    choices: list[AutoChoice]
    experts: None = Field(None, exclude=True)  # the pipeline's `experts` says it
    pipeline: VerifiedPipeline
    session_id: str | None
    message_id: str


class AutoDelta(DeltaMessage):
    """A chunk's delta as OpenAI streams it: unset parts left out."""

    role: Literal["assistant"] | None = Field(None, exclude_if=_is_none)
    content: str | None = Field(None, exclude_if=_is_none)


class AutoChunkChoice(ChatChunkChoice):
    delta: AutoDelta


class AutoChunk(ChatCompletionChunk):
    """A `chat.completion.chunk` of model `auto`: a piece of the answer, or the usage."""

    choices: list[AutoChunkChoice]
    usage: Usage | None = Field(None, exclude_if=_is_none)
    experts: None = Field(None, exclude=True)


class AutoProgressChunk(AutoChunk):
    """The pipeline's progress for the UI (OpenAI clients ignore it), with an empty delta."""

    pipeline_event: RouteEvent | StepEvent


class AutoFinalChunk(AutoChunk):
    """The answer's last chunk (`finish_reason: stop`): the pipeline and the ids."""

    pipeline: VerifiedPipeline
    message_id: str
    session_id: str | None


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
