"""creative_svc's wire models, shared with the gateway's passthrough.

- `POST /v1/images/generations`: `ImageGenerationRequest` -> `ImageGenerationResponse`,
  the OpenAI images API (`prompt`, `n`, `size`, `response_format: "b64_json"`), PNG,
  resized to `size` from the 28x28 the models draw (the gateway adds `"url"`).
  Extensions: `model` ("diffusion" | "gan"), `steps`, `guidance_scale`, `sampler`
  ("ddim" | "ddpm") and `seed` (same seed and request -> same images); the response
  adds what was run (model, seed, steps...), how the prompt was read, and a `note`
  when the prompt asks for something outside the ten Fashion-MNIST classes.
- `POST /v1/creative/ideate`: `IdeateRequest` -> `IdeateResponse`: ideas from the LLM
  (description, visual concept, why it is new), an image per visual concept, and
  the LLM's critique of the set.

Unknown request fields are ignored, as OpenAI-compatible servers do.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_IDEAS",
    "MAX_IMAGES",
    "MAX_PROMPT_CHARS",
    "Idea",
    "IdeateRequest",
    "IdeateResponse",
    "ImageData",
    "ImageGenerationRequest",
    "ImageGenerationResponse",
    "ImageModel",
    "ImageSize",
    "PromptReading",
]

MAX_IMAGES = 10  # as OpenAI's dall-e-2
MAX_IDEAS = 5
MAX_PROMPT_CHARS = 1000  # as OpenAI's dall-e-2

ImageModel = Literal["diffusion", "gan"]
# 1024x1024: OpenAI's default size, so that clients left at it are served.
ImageSize = Literal["256x256", "512x512", "1024x1024"]


class ImageGenerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: Annotated[str, Field(max_length=MAX_PROMPT_CHARS)]
    n: Annotated[int, Field(ge=1, le=MAX_IMAGES)] = 1
    size: ImageSize = "256x256"
    response_format: Literal["b64_json"] = "b64_json"  # no hosted files, so no "url"
    model: ImageModel = "diffusion"
    # Denoising steps (diffusion only); None: the service's default.
    steps: Annotated[int, Field(ge=1)] | None = None
    # Classifier-free guidance (diffusion only): 1 = plain conditional, 0 = unconditional.
    guidance_scale: Annotated[float, Field(ge=0.0, le=30.0)] | None = None
    sampler: Literal["ddim", "ddpm"] = "ddim"
    # None: a random seed, returned in the response so the images can be made again.
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    user: str | None = None


class ImageData(BaseModel):
    b64_json: str  # a PNG
    revised_prompt: str | None = None


class PromptReading(BaseModel):
    """How the prompt was read: the subject that conditioned the model, the style applied."""

    subject: str
    style: str  # "grayscale" when the prompt names none
    nearest_class: str
    similarity: float  # cosine similarity of the subject to that class's captions
    in_domain: bool


class ImageGenerationResponse(BaseModel):
    created: int
    data: list[ImageData]
    model: ImageModel
    seed: int
    steps: int | None  # None for the GAN
    guidance_scale: float | None
    sampler: str | None
    prompt_reading: PromptReading
    note: str | None = None  # set when the prompt is outside what the model knows


class IdeateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    task: Annotated[str, Field(min_length=1, max_length=4000)]
    n: Annotated[int, Field(ge=1, le=MAX_IDEAS)] = 3
    size: ImageSize = "256x256"
    model: ImageModel = "diffusion"
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None


class Idea(BaseModel):
    description: str
    visual_concept: str
    why: str
    image: str  # base64 PNG of the visual concept
    prompt_reading: PromptReading
    note: str | None = None


class IdeateResponse(BaseModel):
    ideas: list[Idea]
    critique: str
    # "model": written by moe_svc; "fallback": moe_svc's answer was unusable, so built here.
    ideas_source: Literal["model", "fallback"]
    critique_source: Literal["model", "fallback"]
    seed: int
