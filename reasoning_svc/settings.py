"""Settings of reasoning_svc (env prefix `REASONING_`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from common.models import ModelEngines, default_model_field, model_engines_field
from common.settings import Port, ServiceSettings, default_url

__all__ = ["ReasoningSettings"]


class ReasoningSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REASONING_", extra="ignore")

    service_name: ClassVar[str] = "reasoning_svc"

    port: Port = 8007
    moe_url: str = default_url("moe_svc")
    model_engines: ModelEngines = model_engines_field("REASONING_")
    default_model: str = default_model_field("REASONING_")
    tools_url: str = default_url("tools_svc")

    model: str = Field("", description="moe_svc model (empty: the first model it lists).")
    model_timeout_s: float = Field(120.0, gt=0, description="Timeout of one model call.")
    tool_timeout_s: float = Field(60.0, gt=0, description="Timeout of one tools_svc call.")
    strategy_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Wall-clock budget of one strategy run: past it, the run stops with its "
        "best answer so far (stop_reason 'timeout').",
    )
    parallel_calls: int = Field(
        4, ge=1, le=64, description="Model calls in flight at once (samples, ToT evaluations)."
    )

    max_question_chars: int = Field(8000, ge=1, description="Longest question (413 beyond).")
    max_context_messages: int = Field(
        20, ge=0, description="Most context messages in a request (413 beyond)."
    )
    max_context_chars: int = Field(
        16_000, ge=0, description="Most characters of context in a request (413 beyond)."
    )

    max_tokens: int = Field(384, ge=16, description="Default max_tokens of one model call.")
    max_tokens_limit: int = Field(2048, ge=16, description="Largest max_tokens a request may set.")
    temperature: float = Field(0.0, ge=0, le=2, description="Temperature of greedy strategies.")
    sample_temperature: float = Field(
        0.7, ge=0, le=2, description="Temperature of self-consistency samples and ToT proposals."
    )

    samples: int = Field(5, ge=1, description="Default self-consistency samples.")
    max_samples: int = Field(16, ge=1, description="Most self-consistency samples (400 beyond).")
    max_steps: int = Field(6, ge=1, description="Default ReAct iterations.")
    max_steps_limit: int = Field(15, ge=1, description="Most ReAct iterations (400 beyond).")
    beam_width: int = Field(2, ge=1, description="Default ToT beam width.")
    max_beam_width: int = Field(5, ge=1, description="Largest ToT beam width (400 beyond).")
    depth: int = Field(3, ge=1, description="Default ToT depth.")
    max_depth: int = Field(6, ge=1, description="Deepest ToT search (400 beyond).")
    proposals: int = Field(3, ge=1, description="Default ToT thoughts proposed per state.")
    max_proposals: int = Field(5, ge=1, description="Most ToT proposals per state (400 beyond).")
    check_goal: bool = Field(
        False, description="ReAct asks the model whether a final answer meets the goal."
    )
    observation_chars: int = Field(
        1500, ge=100, description="Longest tool observation kept in the ReAct scratchpad."
    )
    scratchpad_chars: int = Field(
        2400,
        ge=200,
        description="Most characters of earlier ReAct steps in a prompt (older ones are left "
        "out of the prompt, not the trace), so the loop stays inside the model's context.",
    )
    react_constrained: bool = Field(
        True,
        description="ReAct asks for each turn as JSON under a schema of the offered tools "
        "(response_format json_schema: moe_svc decodes under it); a reply that is not such "
        "JSON is read as free text. false: free-text Thought/Action turns, parsed (measured "
        "with the default model: 1/28 against 10/28 constrained, docs/benchmarks.md).",
    )
    pal_attempts: int = Field(
        2, ge=1, le=5, description="Programs PAL may write (a failed run is shown to the next)."
    )
    pal_samples: int = Field(
        1,
        ge=1,
        le=16,
        description="Programs PAL writes and runs, their printed results voting (the first "
        "greedy, the rest at sample_temperature); 1: one greedy program, retried on failure. "
        "A request's samples overrides it. Measured with the default model: 3 or 5 gain at "
        "most 1 of 56 problems for 2.3-3.8x the time (docs/benchmarks.md).",
    )
    pal_constrained: bool = Field(
        True,
        description="PAL's program is decoded under a grammar of a small Python subset "
        "(assignments, arithmetic, round/abs/min/max, one print), so it always parses; "
        "false: free text, the code block extracted.",
    )

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> ReasoningSettings:
        pairs = [
            ("samples", self.samples, "max_samples", self.max_samples),
            ("max_steps", self.max_steps, "max_steps_limit", self.max_steps_limit),
            ("beam_width", self.beam_width, "max_beam_width", self.max_beam_width),
            ("depth", self.depth, "max_depth", self.max_depth),
            ("proposals", self.proposals, "max_proposals", self.max_proposals),
            ("max_tokens", self.max_tokens, "max_tokens_limit", self.max_tokens_limit),
        ]
        for name, value, limit_name, limit in pairs:
            if value > limit:
                raise ValueError(f"REASONING_{name.upper()} ({value}) exceeds {limit_name}")
        return self
