"""OpenAI-compatible chat and text completion wire models (moe_svc, reused by the gateway).

- `POST /v1/chat/completions`: `ChatCompletionRequest` -> `ChatCompletionResponse`, or with
  `stream` server-sent `ChatCompletionChunk`s ending in `data: [DONE]`.
- `POST /v1/completions`: `CompletionRequest` -> `CompletionResponse` (or `CompletionChunk`s).
- `GET /v1/models`: `ModelList`.
- `POST /v1/tokenize`: `TokenizeRequest` -> `TokenizeResponse`.

Unknown request fields are ignored, as OpenAI-compatible servers (vLLM) do, so that
newer clients keep working. vLLM's sampling extensions `top_k` and
`repetition_penalty` are accepted; `return_experts` asks for the experts each layer
routed this response's tokens to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "MAX_N",
    "MAX_STOP_SEQUENCES",
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "ChatMessageIn",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionRequest",
    "CompletionResponse",
    "DeltaMessage",
    "ExpertUsage",
    "FinishReason",
    "ModelCard",
    "ModelList",
    "SamplingFields",
    "StreamOptions",
    "TokenizeRequest",
    "TokenizeResponse",
    "Usage",
]

MAX_N = 8  # choices per request: each is a sequence of its own in the engine
MAX_STOP_SEQUENCES = 4  # as OpenAI

FinishReason = Literal["stop", "length", "abort"]


class StreamOptions(BaseModel):
    include_usage: bool = False  # a last chunk with `usage` and no choices


class SamplingFields(BaseModel):
    """What chat and text completions share: model, length, sampling, stream."""

    model_config = ConfigDict(extra="ignore")

    model: Annotated[str, Field(min_length=1)]
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    # vLLM extension; 0 or -1: no top-k cut
    top_k: Annotated[int, Field(ge=-1)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] = 0.0
    # vLLM / transformers extension: > 1 discourages tokens already in prompt or output
    repetition_penalty: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    # extension: per-layer expert counts of this response's tokens (prompt and output)
    return_experts: bool = False
    # vLLM extensions: keep generating past end-of-sequence (benchmarks); the output token ids
    ignore_eos: bool = False
    return_token_ids: bool = False

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    def stop_list(self) -> list[str]:
        return list(self.stop or [])


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """A message of the conversation; content may be OpenAI text parts."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessageIn], Field(min_length=1)]
    # OpenAI's newer name for max_tokens; either may be given
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    logprobs: bool | None = None
    # extension (vLLM): continue the last assistant message instead of starting a new one
    add_generation_prompt: bool = True


class CompletionRequest(SamplingFields):
    # a text or token ids; batches of prompts are not supported (one prompt, `n` choices)
    prompt: str | list[int]
    echo: bool = False
    logprobs: int | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_empty(cls, value: str | list[int]) -> str | list[int]:
        if len(value) == 0:
            raise ValueError("prompt must not be empty")
        return value


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ExpertUsage(BaseModel):
    """Tokens (prompt and output) routed to each expert, per MoE layer: `per_layer[l][e]`."""

    per_layer: list[list[int]]


class ChatMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: FinishReason | None
    logprobs: None = None
    token_ids: list[int] | None = None  # with return_token_ids


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: Sequence[ChatChoice]
    usage: Usage
    experts: list[ExpertUsage] | None = None  # extension, one per choice


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: Sequence[ChatChunkChoice]
    usage: Usage | None = None
    experts: list[ExpertUsage] | None = None  # extension, on the usage chunk


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: None = None
    token_ids: list[int] | None = None  # with return_token_ids (not streamed)


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    experts: list[ExpertUsage] | None = None


# a streamed text completion chunk has the same shape as the response
CompletionChunk = CompletionResponse


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llm-platform"
    max_model_len: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class TokenizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str
    model: str | None = None
    add_special_tokens: bool = False


class TokenizeResponse(BaseModel):
    tokens: list[int]
    count: int
