"""reasoning_svc's wire models (its OpenAPI at `/docs`).

`POST /v1/reason` takes a `ReasonRequest` and answers a `ReasonResponse`:
the answer, the strategy that ran, the full trace (every prompt and
completion, thought, action, observation, proposal, evaluation and vote in
order), the tool calls, and the model calls and tokens spent.

Per-strategy knobs left unset take the service's defaults; values above the
service's limits are refused with 400 naming the parameter.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from common.contracts.memory import ContextMessage

__all__ = [
    "STRATEGIES",
    "ReasonRequest",
    "ReasonResponse",
    "ReasoningUsage",
    "Strategy",
    "ToolCallRecord",
    "TraceEvent",
    "TraceKind",
]

Strategy = Literal["auto", "direct", "cot", "self_consistency", "tot", "react", "pal"]
STRATEGIES: tuple[Strategy, ...] = (
    "auto",
    "direct",
    "cot",
    "self_consistency",
    "tot",
    "react",
    "pal",
)
TraceKind = Literal[
    "choice",  # auto: which strategy and why
    "prompt",  # a model call's messages (data.messages, data.purpose)
    "completion",  # the model's reply to the prompt before it
    "thought",
    "action",
    "observation",
    "check",  # react: whether the goal is met
    "proposal",  # tot: a candidate next thought
    "evaluation",  # tot: a candidate's value
    "selection",  # tot: the beam kept at a depth
    "program",  # pal: the code that was run
    "vote",  # self_consistency: the tally
    "answer",
]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


class ReasonRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: Annotated[str, AfterValidator(_not_blank)]
    strategy: Strategy = "auto"
    # Earlier turns of the conversation, oldest first, for follow-up questions (as
    # memory_svc assembles them; system messages are not used).
    context: list[ContextMessage] | None = None
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    # Per model call.
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    # Completion tokens of the whole run, all model calls together (the caller's own
    # max_tokens): once spent, the run stops with its best answer so far.
    max_total_tokens: Annotated[int, Field(ge=1)] | None = None
    # self_consistency: chains sampled and voted on; pal: programs written, run and voted on.
    samples: Annotated[int, Field(ge=1)] | None = None
    # react: Thought/Action/Observation iterations.
    max_steps: Annotated[int, Field(ge=1)] | None = None
    # tot: states kept per depth, depth of the search, thoughts proposed per state.
    beam_width: Annotated[int, Field(ge=1)] | None = None
    depth: Annotated[int, Field(ge=1)] | None = None
    proposals: Annotated[int, Field(ge=1)] | None = None
    # react: the tools the agent may use (default: all tools_svc lists).
    tools: list[str] | None = None
    # react: ask the model whether a final answer meets the goal before stopping.
    check_goal: bool | None = None
    # Wall-clock seconds the caller can wait (a router's turn has a budget): the run
    # stops with its best answer so far at the smaller of this and the service's own
    # strategy timeout (stop_reason "timeout").
    time_budget_s: Annotated[float, Field(gt=0, le=3600)] | None = None


class TraceEvent(BaseModel):
    # Position in the run, from 0.
    index: int
    kind: TraceKind
    content: str
    # react iteration, tot depth or self_consistency sample the event belongs to.
    step: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class ToolCallRecord(BaseModel):
    tool: str
    arguments: dict[str, Any]
    output: Any = None
    error: str | None = None
    duration_ms: float


class ReasoningUsage(BaseModel):
    model_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # True when moe_svc reported no usage and tokens were estimated (4 characters each).
    estimated: bool = False


class ReasonResponse(BaseModel):
    answer: str
    # The strategy that ran (auto resolved).
    strategy: Strategy
    requested_strategy: Strategy
    # False when the run stopped without an answer it trusts (react: iteration limit).
    finished: bool
    # answer | max_steps | no_answer | program_failed | goal_not_met | token_budget | timeout
    stop_reason: str
    trace: list[TraceEvent]
    tool_calls: list[ToolCallRecord]
    usage: ReasoningUsage
    # self_consistency: normalised answer -> votes.
    votes: dict[str, int] | None = None
    model: str
    latency_ms: float
