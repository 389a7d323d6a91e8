"""Settings of moe_svc (env prefix `MOE_`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from common.netguard import parse_host_list
from common.settings import Port, ServiceSettings

__all__ = ["MoeSettings"]


class MoeSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MOE_", extra="ignore")

    service_name: ClassVar[str] = "moe_svc"

    port: Port = 8002
    model_dir: Path | None = Field(
        None,
        description=(
            "Hugging Face model directory to serve; unset: the default 8-expert model, "
            "built on first start into <data_dir>/models/."
        ),
    )
    served_model_name: str | None = Field(
        None, description="Model id clients ask for; unset: the model directory's name."
    )
    dtype: Literal["auto", "float32", "bfloat16", "int8", "int4"] = Field(
        "auto",
        description=(
            "Weight type. auto: bfloat16 where the decode kernels load, else float32. "
            "bfloat16 with the kernel: weights stored in bf16 (half the bytes read per "
            "token, ~1.2-1.5x faster decoding, perplexity within 0.01%), activations in "
            "fp32; without it a bf16 model throughout (slower on CPUs without AMX). "
            "int8 / int4 (need the kernel, else float32): weight-only int8 with a scale "
            "per output row / int4 with a scale per 32 weights of a row; activations and "
            "sums in fp32."
        ),
    )
    shared_experts: bool = Field(
        True,
        description=(
            "Serve upcycled experts as one shared FFN plus low-rank deltas where exact "
            "(same outputs, far fewer weight bytes per token); false: stacked experts."
        ),
    )
    decode_kernel: bool = Field(
        True,
        description=(
            "Compile the native decode kernels at start (a C compiler; AVX2 or AVX-512): "
            "the products, MoE blocks and attention of decode steps in native code, "
            "about 2x faster decoding. Without them (or false): torch's ops."
        ),
    )
    max_batch_size: int = Field(
        16, ge=1, le=256, description="Sequences decoding together (KV-cache rows)."
    )
    max_queue: int = Field(
        64,
        ge=0,
        description=(
            "Requests waiting for a batch slot before new ones get a 503 overloaded "
            "(with Retry-After)."
        ),
    )
    max_queue_wait_s: float = Field(
        30.0,
        ge=0,
        description=(
            "Seconds a request may wait for a batch slot; past it, it leaves the queue "
            "unstarted and gets a 503 overloaded with Retry-After (a stream before its "
            "first byte). 0: no deadline."
        ),
    )
    max_context: int = Field(
        2048, ge=16, description="Most prompt plus output tokens of one sequence."
    )
    default_max_tokens: int = Field(
        512, ge=1, description="Output limit of a chat completion that sets no max_tokens."
    )
    prefill_tokens_per_step: int = Field(
        512, ge=1, description="Prompt tokens prefilled between two decode steps."
    )
    num_threads: int = Field(2, ge=1, le=256, description="Torch threads of the engine.")
    vision: bool = Field(
        True,
        description="Load the vision encoder and projector so the model answers about images "
        "(only for the model they were trained against; others serve text only).",
    )
    vision_dir: Path | None = Field(
        None,
        description="Vision adapter directory; unset: the committed one "
        "(moe_svc/artefacts/vision, trained by python -m moe_svc.vision.train).",
    )
    max_images_per_request: int = Field(
        8, ge=0, description="Image parts one chat request may carry; more: 400 too_many_images."
    )
    max_image_bytes: int = Field(
        10 * 1024 * 1024,
        ge=1024,
        description="Largest image file (after base64 decoding or download), bytes.",
    )
    max_image_pixels: int = Field(
        16_000_000,
        ge=1,
        description=(
            "Most pixels (width x height) of an image, read from its header before decoding: "
            "larger images and decompression bombs get a 400 image_too_large."
        ),
    )
    # NoDecode: the environment gives comma-separated names, not JSON (a JSON array works too).
    image_url_allowlist: Annotated[list[str], NoDecode] = Field(
        default=[],
        description=(
            "Hosts (`example.com`, `*.example.com`) that http(s) image URLs may be fetched "
            "from, through the SSRF guard; default none: images only as data: URLs."
        ),
    )
    image_fetch_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Time to fetch one allowlisted image URL."
    )

    @field_validator("image_url_allowlist", mode="before")
    @classmethod
    def _image_hosts(cls, value: object) -> object:
        return parse_host_list(value, "MOE_IMAGE_URL_ALLOWLIST")
