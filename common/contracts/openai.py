"""OpenAI-compatible chat and text completion wire models (moe_svc, reused by the gateway).

- `POST /v1/chat/completions`: `ChatCompletionRequest` -> `ChatCompletionResponse`, or with
  `stream` server-sent `ChatCompletionChunk`s ending in `data: [DONE]`.
- `POST /v1/completions`: `CompletionRequest` -> `CompletionResponse` (or `CompletionChunk`s).
- `GET /v1/models`: `ModelList`.
- `POST /v1/tokenize`: `TokenizeRequest` -> `TokenizeResponse`.

Unknown request fields are ignored, as OpenAI-compatible servers (vLLM) do, so that
newer clients keep working; OpenAI fields a server cannot honour are declared here
so that it can refuse them with a 400 instead. vLLM's sampling extensions `top_k`
and `repetition_penalty` are accepted; `return_experts` asks for the experts each
layer routed this response's tokens to.

Tools (`tools`, `tool_choice`, `parallel_tool_calls`), `response_format` (text,
json_object, json_schema) and `logprobs` / `top_logprobs` follow OpenAI's shapes;
responses validate against the `openai` package's own models. The extension `grammar`
(`{"syntax": "lark", "definition": ...}`) constrains a chat reply to a context-free
grammar, as OpenAI's custom tools do with a Lark grammar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "MAX_GRAMMAR_CHARS",
    "MAX_N",
    "MAX_STOP_SEQUENCES",
    "MAX_TOP_LOGPROBS",
    "ChatChoice",
    "ChatChunkChoice",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatCompletionResponse",
    "ChatMessage",
    "ChatMessageIn",
    "ChoiceLogprobs",
    "CompletionChoice",
    "CompletionChunk",
    "CompletionLogprobs",
    "CompletionRequest",
    "CompletionResponse",
    "ContentPart",
    "DeltaFunctionCall",
    "DeltaMessage",
    "DeltaToolCall",
    "ExpertUsage",
    "FinishReason",
    "FunctionCall",
    "FunctionDefinition",
    "GrammarFormat",
    "ImagePart",
    "ImageUrl",
    "JsonSchemaFormat",
    "ModelCard",
    "ModelList",
    "NamedToolChoice",
    "OutputFields",
    "ResponseFormat",
    "SamplingFields",
    "StreamOptions",
    "TokenLogprob",
    "TokenizeRequest",
    "TokenizeResponse",
    "ToolCall",
    "ToolChoice",
    "ToolDefinition",
    "TopLogprob",
    "Usage",
]

MAX_N = 8  # choices per request: each is a sequence of its own in the engine
MAX_STOP_SEQUENCES = 4  # as OpenAI
MAX_TOP_LOGPROBS = 20  # as OpenAI's chat completions

FinishReason = Literal["stop", "length", "tool_calls", "abort"]


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


class ImageUrl(BaseModel):
    # a `data:image/png|jpeg|webp;base64,...` URL; an http(s) URL only where the
    # serving side's allowlist names its host (common.image_input)
    url: Annotated[str, Field(min_length=1)]
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(BaseModel):
    """An OpenAI image content part: the model sees the picture where the part stands."""

    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class FunctionCall(BaseModel):
    name: str
    arguments: str  # a JSON object, as text


class ToolCall(BaseModel):
    """A call the assistant made (in a response, or in an earlier turn sent back)."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessageIn(BaseModel):
    """A message of the conversation; content may be OpenAI text and image parts."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # an assistant turn that called tools
    tool_call_id: str | None = None  # a tool turn: the call it answers

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    def images(self) -> list[ImageUrl]:
        """The message's image parts, in order."""
        if not isinstance(self.content, list):
            return []
        return [part.image_url for part in self.content if isinstance(part, ImagePart)]


class FunctionDefinition(BaseModel):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None  # a JSON schema of the arguments object
    strict: bool | None = None


class ToolDefinition(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class _FunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: _FunctionName


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    # `schema` shadows a BaseModel attribute: stored as json_schema, sent as "schema"
    json_schema: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


# The longest grammar a request may carry (characters).
MAX_GRAMMAR_CHARS = 20_000


class GrammarFormat(BaseModel):
    """Extension: the reply follows a context-free grammar (Lark syntax, llguidance's dialect)."""

    model_config = ConfigDict(extra="forbid")

    syntax: Literal["lark"] = "lark"
    definition: Annotated[str, Field(min_length=1, max_length=MAX_GRAMMAR_CHARS)]


class OutputFields(BaseModel):
    """OpenAI's chat controls of the output's form: logprobs, tool calls, a response format
    (shared with the router's dispatch options, which pass them on)."""

    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None


class ChatCompletionRequest(SamplingFields, OutputFields):
    messages: Annotated[list[ChatMessageIn], Field(min_length=1)]
    # OpenAI's newer name for max_tokens; either may be given
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    # OpenAI fields a server may not implement: declared so that it can refuse them
    logit_bias: dict[str, float] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    # extension (vLLM): continue the last assistant message instead of starting a new one
    add_generation_prompt: bool = True
    # extension: the reply is decoded under this grammar (moe_svc; refused with tools or a
    # response_format, and with model `auto`)
    grammar: GrammarFormat | None = None


class CompletionRequest(SamplingFields):
    # a text or token ids; batches of prompts are not supported (one prompt, `n` choices)
    prompt: str | list[int]
    echo: bool = False
    logprobs: Annotated[int, Field(ge=0, le=MAX_TOP_LOGPROBS)] | None = None
    logit_bias: dict[str, float] | None = None
    suffix: str | None = None
    best_of: int | None = None

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
    content: str | None
    refusal: str | None = None  # OpenAI requires the field (null: no refusal)
    tool_calls: list[ToolCall] | None = None


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None  # the token's UTF-8 bytes (a token may hold part of a character)


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class ChatChoice(BaseModel):
    index: int
    message: ChatMessage
    finish_reason: FinishReason | None
    logprobs: ChoiceLogprobs | None = None
    token_ids: list[int] | None = None  # with return_token_ids


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: Sequence[ChatChoice]
    usage: Usage
    experts: list[ExpertUsage] | None = None  # extension, one per choice


class DeltaFunctionCall(BaseModel):
    name: str | None = None
    arguments: str | None = None


class DeltaToolCall(BaseModel):
    """A streamed tool call: the first delta has id, type and name, later ones arguments."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: DeltaFunctionCall


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None  # only on a choice's first chunk
    content: str | None = None
    tool_calls: list[DeltaToolCall] | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: Sequence[ChatChunkChoice]
    usage: Usage | None = None
    experts: list[ExpertUsage] | None = None  # extension, on the usage chunk


class CompletionLogprobs(BaseModel):
    """Legacy completions' logprobs: parallel lists over the choice's tokens."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: CompletionLogprobs | None = None
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
    # what the model reads: ["text"], or ["text", "image"] for one that sees images
    input_modalities: list[Literal["text", "image"]] | None = None
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
