"""router_svc's wire models.

- `POST /v1/route`: `RouteRequest` -> `RouteResponse` (intent, calibrated
  scores and the plan the router would run).
- `POST /v1/dispatch`: `DispatchRequest` -> `DispatchResponse` (the answer and
  the `Pipeline` that says what ran), or, with `stream: true`, server-sent
  events: `data: {"type": "route", ...}`, one `{"type": "step", ...}` per
  finished step, `{"type": "delta", "content": ...}` pieces of the answer, a
  final `{"type": "done", "message": ..., "pipeline": ...}` (or
  `{"type": "error", "error": {...}}`), then `data: [DONE]`.

Limits on sizes are the router's settings; the models only bound what no
setting could allow.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from common.contracts.openai import (
    MAX_N,
    MAX_STOP_SEQUENCES,
    ChatChoice,
    ExpertUsage,
    OutputFields,
    ToolCall,
)
from common.contracts.rag import Attribution, Citation, CollectionNames
from common.contracts.reasoning import (
    ReasoningUsage,
    ReasonResponse,
    Strategy,
    ToolCallRecord,
    TraceEvent,
)

__all__ = [
    "ANSWER_CONTROLS",
    "INTENTS",
    "AssistantMessage",
    "DispatchMessage",
    "DispatchOptions",
    "DispatchRequest",
    "DispatchResponse",
    "Intent",
    "Pipeline",
    "PipelineImage",
    "PipelineStep",
    "PipelineToolCall",
    "Plan",
    "PlanStep",
    "ReasoningReport",
    "RouteRequest",
    "RouteResponse",
    "Source",
    "StepStatus",
]

Intent = Literal["factual", "reasoning", "creative", "tool", "chat"]
INTENTS: tuple[Intent, ...] = ("factual", "reasoning", "creative", "tool", "chat")
StepStatus = Literal["ok", "failed", "timeout", "skipped"]

# Session ids end up in memory_svc's Redis keys (its ID pattern).
SESSION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,127}$"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


NonBlankStr = Annotated[str, AfterValidator(_not_blank)]


class DispatchMessage(BaseModel):
    """A message of the conversation sent to the router, OpenAI-style; content parts
    (lists) are read as their text, and their images go to the core model's vision path.
    An agent's turns keep their structure: the assistant's `tool_calls` and the
    `tool_call_id` a tool result answers."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = ""
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")
        return self.content or ""

    def images(self) -> list[dict[str, Any]]:
        """The message's `image_url` parts, as sent (moe_svc checks and decodes them)."""
        if not isinstance(self.content, list):
            return []
        return [p for p in self.content if p.get("type") == "image_url"]


# --- route -------------------------------------------------------------------------------


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: NonBlankStr
    # The conversation's last turns, oldest first; short follow-ups ("and in
    # Celsius?") are classified with them.
    history: list[DispatchMessage] | None = None


class PlanStep(BaseModel):
    # e.g. "memory.context", "rag.answer", "moe.answer", "tools.invoke".
    name: str
    service: str
    endpoint: str
    # A failure of an optional step degrades the answer; the plan goes on.
    optional: bool = False
    # Steps whose results this one needs; steps without a common ancestor run concurrently.
    after: list[str] = Field(default_factory=list)
    # When the step runs at all, e.g. "session_id given", "rag.answer failed".
    when: str | None = None
    # Arguments decided at planning time (a tool and its arguments, a strategy).
    arguments: dict[str, Any] = Field(default_factory=dict)


class Plan(BaseModel):
    intent: Intent
    # The confidence was below the threshold: the safe general plan runs instead.
    fallback: bool = False
    description: str
    steps: list[PlanStep]


class RouteResponse(BaseModel):
    intent: Intent
    # The calibrated probability of `intent`.
    confidence: float
    scores: dict[str, float]
    plan: Plan
    fallback: bool
    threshold: float
    # The history was used to classify a short follow-up.
    context_used: bool = False
    # Why the safe plan was chosen, in words; null when it was not.
    reason: str | None = None


# --- dispatch ----------------------------------------------------------------------------


class DispatchOptions(OutputFields):
    model_config = ConfigDict(extra="forbid")

    # Skip the classifier and run this intent's plan.
    intent: Intent | None = None
    # reasoning_svc strategy for the reasoning plan (default: auto).
    strategy: Strategy | None = None
    # The rag_svc collections factual questions search (default: the router's setting;
    # there, empty: every collection the caller may read).
    collections: CollectionNames = None
    k: Annotated[int, Field(ge=1, le=50)] | None = None
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=8192)] | None = None
    # Images for the creative plan's picture requests.
    n_images: Annotated[int, Field(ge=1, le=4)] | None = None
    # OpenAI's controls of the answer, for the step that writes it (ANSWER_CONTROLS; a
    # plan whose answer step cannot honour one refuses the request).
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=MAX_STOP_SEQUENCES)] | None = None
    seed: int | None = None
    n: Annotated[int, Field(ge=1, le=MAX_N)] | None = None
    # From OutputFields: logprobs and top_logprobs, and tools, tool_choice,
    # parallel_tool_calls and response_format, which send the turn to the core model
    # whatever its intent (it alone can honour them).


# The options that are OpenAI's controls of the answer, passed as they are to the step
# that writes it.
ANSWER_CONTROLS: tuple[str, ...] = (
    "temperature",
    "max_tokens",
    "top_p",
    "stop",
    "seed",
    "n",
    "logprobs",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
)


class DispatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: Annotated[list[DispatchMessage], Field(min_length=1)]
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None
    user: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = None
    stream: bool = False
    options: DispatchOptions = Field(default_factory=DispatchOptions)


class PipelineStep(BaseModel):
    name: str
    service: str
    status: StepStatus
    optional: bool
    latency_ms: float
    # Why it failed or was skipped, in words.
    error: str | None = None
    # What the step produced that the caller may want (sizes, counts, ids).
    detail: dict[str, Any] = Field(default_factory=dict)


class Source(BaseModel):
    number: int
    doc_id: str
    chunk_id: str | None = None
    text: str
    score: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    # The collection it came from, and its document's title.
    collection: str | None = None
    title: str | None = None


class PipelineToolCall(ToolCallRecord):
    """A tool call made for the answer: one of reasoning_svc's agent, or the router's own
    direct call to tools_svc."""

    # tools_svc cut long strings in `output`: the router's direct calls say; reasoning_svc's
    # records do not, and leave the key out.
    truncated: bool | None = None

    @model_serializer(mode="wrap")
    def _without_unknown_truncation(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if self.truncated is None and isinstance(data, dict):
            data.pop("truncated", None)
        return data


class ReasoningReport(BaseModel):
    """How reasoning_svc reached the answer: its `ReasonResponse` without the answer
    itself (the message) and the tool calls (the pipeline's `tool_calls`)."""

    strategy: Strategy
    requested_strategy: Strategy
    finished: bool
    stop_reason: str
    trace: list[TraceEvent]
    usage: ReasoningUsage
    votes: dict[str, int] | None = None
    model: str
    latency_ms: float

    @classmethod
    def of(cls, response: ReasonResponse) -> ReasoningReport:
        return cls(**{name: getattr(response, name) for name in cls.model_fields})


class PipelineImage(BaseModel):
    """A picture creative_svc drew for the answer, with the idea it shows."""

    b64_json: str  # a PNG
    description: str


class Pipeline(BaseModel):
    intent: Intent
    confidence: float
    scores: dict[str, float]
    fallback: bool
    context_used: bool = False
    plan: Plan
    steps: list[PipelineStep]
    # Factual answers: whether the answer rests on retrieved sources; null for other intents.
    sourced: bool | None = None
    sources: list[Source] = Field(default_factory=list)
    # rag_svc's check of each `[n]` in the answer against its source.
    citations: list[Citation] = Field(default_factory=list)
    # rag_svc's attribution of each answer sentence (which source supports it; what became
    # of the unsupported ones); null when rag_svc did not answer from sources.
    attribution: Attribution | None = None
    tool_calls: list[PipelineToolCall] = Field(default_factory=list)
    reasoning: ReasoningReport | None = None
    images: list[PipelineImage] = Field(default_factory=list)
    # What a user should know about how the answer was made (a degraded step, the fallback).
    notes: list[str] = Field(default_factory=list)
    model: str | None = None
    # moe_svc's tokens per layer and expert for an answer the core model wrote (the UI's
    # heatmap); null when another service answered.
    experts: ExpertUsage | None = None
    latency_ms: float


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class DispatchResponse(BaseModel):
    id: str
    object: Literal["router.dispatch"] = "router.dispatch"
    session_id: str | None = None
    # The first choice's text ("" for an answer that only calls tools).
    message: AssistantMessage
    # The answer as OpenAI chooses it: one choice, or `n` from the core model, each with
    # its `finish_reason`, `tool_calls` and `logprobs` as the step that wrote it gave them.
    choices: Annotated[list[ChatChoice], Field(min_length=1)]
    pipeline: Pipeline
