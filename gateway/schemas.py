"""The gateway's own wire models: OpenAI chat, models and images with the platform's extensions.

Model `auto` answers with OpenAI's `chat.completion` and
`chat.completion.chunk` shapes (`common.contracts.openai`) plus the
extensions: the `pipeline` that ran (router_svc's, with the gateway's
`verification` of the citations), `session_id` and `message_id` (what
`POST /v1/feedback` rates), and `pipeline_event`s that show a stream's
progress. moe_svc's own extensions (`experts`, `token_ids`) are not part of
these answers, and a chunk carries `usage` only when it is the usage chunk.

`GET /v1/models` lists `GatewayModelCard`s: OpenAI's `Model` plus the
model's `kind` and the `aliases` that reach it. Images: the gateway reads
`GatewayImageRequest` (the rest of the body is creative_svc's to check) and
answers `GatewayImagesResponse`, each image a signed `url` or `b64_json`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from common.caller import TENANT_PATTERN
from common.contracts.creative import ImageGenerationResponse
from common.contracts.dispatch_events import RouteEvent, StepEvent
from common.contracts.memory import ID_PATTERN, FeedbackFormat
from common.contracts.openai import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    DeltaMessage,
    DeltaToolCall,
    ModelCard,
    Usage,
)
from common.contracts.rag import CollectionNames
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
    "FeedbackExportQuery",
    "FeedbackQuery",
    "GatewayChatRequest",
    "GatewayImageRequest",
    "GatewayImagesResponse",
    "GatewayModelCard",
    "GatewayModelList",
    "ImageOut",
    "ImageResponseFormat",
    "ModelKind",
    "Verification",
    "VerifiedPipeline",
]

# The model id that runs the whole pipeline (router_svc) instead of one model.
AUTO_MODEL = "auto"


def _is_none(value: Any) -> bool:
    return value is None


class GatewayChatRequest(ChatCompletionRequest):
    """OpenAI `POST /v1/chat/completions` plus `session_id` (memory_svc's session) and, for
    model `auto`, `collections` (the collections a factual question searches)."""

    session_id: Annotated[str, Field(pattern=ID_PATTERN)] | None = None
    collections: CollectionNames = None


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
    tool_calls: list[DeltaToolCall] | None = Field(None, exclude_if=_is_none)


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
    """The answer's last chunk (the first choice's `finish_reason`): the pipeline and the
    ids."""

    pipeline: VerifiedPipeline
    message_id: str
    session_id: str | None


# --- models and images ----------------------------------------------------------------------

ModelKind = Literal["chat", "embedding", "image"]


class GatewayModelCard(ModelCard):
    """OpenAI's `Model` plus what the platform serves it for and the aliases that name it."""

    kind: ModelKind
    aliases: list[str] = Field(default_factory=list)


class GatewayModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[GatewayModelCard]


ImageResponseFormat = Literal["url", "b64_json"]


class GatewayImageRequest(BaseModel):
    """What the gateway reads of `POST /v1/images/generations`; creative_svc checks the rest."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None  # None: creative_svc's default model
    size: str | None = None  # None: creative_svc's default size
    # OpenAI's default: a URL (served by the gateway, signed and expiring).
    response_format: ImageResponseFormat = "url"


class ImageOut(BaseModel):
    """OpenAI's `Image`: a signed URL or the PNG in base64, never both."""

    url: str | None = Field(None, exclude_if=_is_none)
    b64_json: str | None = Field(None, exclude_if=_is_none)
    revised_prompt: str | None = None


class GatewayImagesResponse(ImageGenerationResponse):
    """creative_svc's answer with each image as the client asked for it."""

    data: list[ImageOut]  # type: ignore[assignment]


def _rating(value: int) -> int:
    if value not in (1, -1):
        raise ValueError("rating must be 1 or -1")
    return value


class FeedbackExportQuery(BaseModel):
    """The query of `GET /v1/feedback/export`."""

    model_config = ConfigDict(extra="forbid")

    format: FeedbackFormat = Field(
        "kto",
        description="kto: every rated answer with its prompt and a bool label; dpo: "
        "chosen/rejected answers to one prompt (a pick after regenerating, or two answers "
        "rated differently); raw: the stored records.",
    )


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
