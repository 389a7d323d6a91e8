"""Settings of creative_svc (env prefix `CREATIVE_`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from common.models import ModelEngines, default_model_field, model_engines_field
from common.settings import Port, ServiceSettings, default_url

__all__ = ["ARTEFACTS_DIR", "CreativeSettings"]

ARTEFACTS_DIR = Path(__file__).parent / "artefacts"


class CreativeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CREATIVE_", extra="ignore")

    service_name: ClassVar[str] = "creative_svc"

    port: Port = 8006
    moe_url: str = default_url("moe_svc")
    model_engines: ModelEngines = model_engines_field("CREATIVE_")
    default_model: str = default_model_field("CREATIVE_")

    weights_dir: Path | None = Field(
        None,
        description="Directory with trained `diffusion/` and `gan/` weights "
        "(unset: the committed `creative_svc/artefacts`).",
    )
    threads: int | None = Field(
        None, ge=1, description="CPU threads for generation (unset: torch's default, all cores)."
    )
    default_steps: int = Field(25, ge=1, description="DDIM steps when a request sets none.")
    max_steps: int = Field(250, ge=1, description="Most denoising steps a request may ask for.")
    default_guidance_scale: float = Field(
        1.5, ge=0, le=30, description="Classifier-free guidance when a request sets none."
    )
    guidance_max_t: int = Field(
        1000,
        ge=0,
        le=1000,
        description="Guidance applies at diffusion timesteps up to this (of 1000); the "
        "noisier steps use the plain conditional prediction.",
    )
    ood_threshold: float = Field(
        0.65,
        ge=0,
        le=1,
        description="Below this similarity to every class caption, a prompt gets a note.",
    )
    model: str = Field("", description="moe_svc model for ideation (empty: the first it lists).")
    model_timeout_s: float = Field(120.0, gt=0, description="Timeout of one moe_svc call.")
    ideate_max_tokens: int = Field(320, ge=16, description="max_tokens of the ideation call.")
    ideate_constrained: bool = Field(
        True,
        description="Ask for ideas under a JSON schema (moe_svc's constrained decoding); "
        "false: labelled lines parsed as text.",
    )
    ideate_temperature: float = Field(
        0.7, ge=0, le=2, description="Temperature of ideation and critique."
    )

    @property
    def weights_path(self) -> Path:
        return self.weights_dir or ARTEFACTS_DIR

    @model_validator(mode="after")
    def _default_steps_within_limit(self) -> CreativeSettings:
        if self.default_steps > self.max_steps:
            raise ValueError(
                f"CREATIVE_DEFAULT_STEPS ({self.default_steps}) exceeds {self.max_steps}"
            )
        return self
