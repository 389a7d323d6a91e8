"""Settings of router_svc (env prefix `ROUTER_`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.contracts.rag import CollectionName
from common.models import ModelEngines, default_model_field, model_engines_field
from common.settings import EmbeddingDtype, Port, ServiceSettings, default_url
from router_svc.intent_head import DEFAULT_WEIGHTS

__all__ = ["RouterSettings"]


class RouterSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ROUTER_", extra="ignore")

    service_name: ClassVar[str] = "router_svc"

    port: Port = 8001
    memory_url: str = default_url("memory_svc")
    rag_url: str = default_url("rag_svc")
    reasoning_url: str = default_url("reasoning_svc")
    creative_url: str = default_url("creative_svc")
    tools_url: str = default_url("tools_svc")
    moe_url: str = default_url("moe_svc")
    model_engines: ModelEngines = model_engines_field("ROUTER_")
    default_model: str = default_model_field("ROUTER_")

    # --- the classifier ---------------------------------------------------------------
    intent_weights: Path | None = Field(
        None,
        description="The trained intent head; unset: the committed "
        "router_svc/weights/intent_head.safetensors (python -m router_svc.train_intent).",
    )
    confidence_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Calibrated confidence below which the safe general plan runs instead.",
    )
    follow_up_max_words: int = Field(
        6, ge=0, description="Turns this short are also classified with the previous user turn."
    )
    context_turns: int = Field(
        1, ge=0, le=10, description="Earlier user turns joined with a short follow-up."
    )
    embedding_threads: int = Field(
        1, ge=1, le=64, description="Torch threads of the embedding model (1 suits short queries)."
    )
    embedding_dtype: EmbeddingDtype = Field(
        "auto",
        description="The embedding model's compute dtype: auto is bfloat16 where the CPU has "
        "AMX (about 3x faster, vectors within 0.9999 cosine of float32's), else float32.",
    )

    # --- request limits -----------------------------------------------------------------
    max_text_chars: int = Field(
        8000, ge=1, description="Longest text to route / latest user message (413 beyond)."
    )
    max_history_messages: int = Field(
        50, ge=0, description="Most history messages in a route request (413 beyond)."
    )
    max_messages: int = Field(100, ge=1, description="Most messages in a dispatch (413 beyond).")
    max_total_chars: int = Field(
        64_000, ge=1, description="Most characters in all messages of a request (413 beyond)."
    )

    # --- the plans ----------------------------------------------------------------------
    model: str = Field(
        "", description="moe_svc model for answers (empty: the first model it lists)."
    )
    rag_collections: list[CollectionName] = Field(
        [],
        description="rag_svc collections factual questions search (empty: every collection "
        "the caller may read: its own and the shared `wiki`).",
    )
    rag_k: int = Field(5, ge=1, le=50, description="Sources retrieved for a factual answer.")
    context_budget_tokens: int = Field(
        1536, ge=64, description="Token budget of the memory context handed to the model."
    )
    max_answer_tokens: int = Field(
        512, ge=1, le=8192, description="Default max_tokens of a model answer."
    )
    creative_temperature: float = Field(
        0.9, ge=0, le=2, description="Sampling temperature of creative text."
    )
    memory_timeout_s: float = Field(
        3.0, gt=0, description="Memory context and history writes: past this, go on without."
    )
    remember_facts: bool = Field(
        False,
        description=(
            "After a turn from a known `user`, memory_svc extracts the facts the user's message "
            "states about them (the core model under a JSON schema) into the user's long-term "
            "memory, in the background. Off by default: it is one more core-model call a turn."
        ),
    )
    remember_max_pending: int = Field(
        4, ge=1, description="Fact extractions in flight at once; past this a turn's is skipped."
    )
    remember_timeout_s: float = Field(
        120.0, gt=0, description="One background fact extraction: past this, it is given up."
    )
    rag_timeout_s: float = Field(
        60.0, gt=0, description="Retrieval-backed answers: past this, answer without sources."
    )
    reasoning_timeout_s: float = Field(
        180.0, gt=0, description="reasoning_svc call: past this, answer directly instead."
    )
    creative_timeout_s: float = Field(
        180.0, gt=0, description="creative_svc call: past this, describe the image in words."
    )
    tool_timeout_s: float = Field(30.0, gt=0, description="A direct tools_svc invocation.")
    model_timeout_s: float = Field(120.0, gt=0, description="A moe_svc chat completion.")
    turn_timeout_s: float = Field(
        100.0,
        gt=0,
        description="A whole turn, all its steps: each step's timeout is cut to what is left "
        "(below an HTTP client's usual 120 s patience); past it, 504 turn_timeout.",
    )
    fallback_reserve_s: float = Field(
        30.0,
        ge=0,
        description="Of the turn's time, kept back from an optional step (rag, reasoning, "
        "creative) for the direct answer that replaces it when it fails.",
    )

    def intent_weights_path(self) -> Path:
        """The intent head to load (the committed one unless configured)."""
        return self.intent_weights or DEFAULT_WEIGHTS
