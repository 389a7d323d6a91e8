"""Prompt -> styled PNGs: parse, validate, condition, generate, style, encode.

The request's checks that depend on settings (steps) and on the prompt's
content (empty, only style words, no known word) live here, so every caller
(the images endpoint, ideation) gets the same 4xx errors.
"""

from __future__ import annotations

import base64
import io
import random
import threading
from dataclasses import dataclass

from PIL import Image

from common.contracts.creative import ImageModel, PromptReading
from common.errors import BadRequest, ServiceUnavailable
from creative_svc.captions import CLASS_NAMES
from creative_svc.conditioning import PromptEncoder
from creative_svc.generators import ImageGenerator, Sampler
from creative_svc.styles import Style, apply_style, parse_style

__all__ = ["GenerationJob", "GenerationResult", "ImageStudio", "encode_png", "out_of_domain_note"]

CLASS_LIST = ", ".join(CLASS_NAMES)


@dataclass(frozen=True)
class GenerationJob:
    prompt: str
    n: int
    size: int
    model: ImageModel
    steps: int
    guidance_scale: float
    sampler: Sampler
    seed: int


@dataclass(frozen=True)
class GenerationResult:
    pngs: list[bytes]
    reading: PromptReading
    note: str | None


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def out_of_domain_note(reading: PromptReading) -> str:
    return (
        f"This model only knows ten kinds of clothing ({CLASS_LIST}); "
        f"'{reading.subject}' is none of them, so the image shows the closest one, "
        f"{reading.nearest_class} (similarity {reading.similarity:.2f})."
    )


def random_seed() -> int:
    return random.SystemRandom().randrange(2**31)


class ImageStudio:
    """Owns the generators and the prompt encoder; one generation runs at a time.

    Generation is CPU-bound: parallel requests would only share the cores, so a
    lock runs them one after another (callers run `generate` in a worker thread).
    """

    def __init__(
        self,
        encoder: PromptEncoder,
        generators: dict[str, ImageGenerator],
        *,
        max_steps: int,
        ood_threshold: float,
    ) -> None:
        self.encoder = encoder
        self.generators = generators
        self.max_steps = max_steps
        self.ood_threshold = ood_threshold
        self._lock = threading.Lock()

    def read_prompt(self, prompt: str) -> tuple[Style, PromptReading]:
        """Style and reading of a prompt; 400 when there is nothing to draw."""
        text = " ".join(prompt.split())
        if not text:
            raise BadRequest(
                "The prompt is empty: say what to draw.", param="prompt", code="empty_prompt"
            )
        style, subject = parse_style(text)
        if not subject:
            raise BadRequest(
                f"The prompt names only a style ({style.describe()}): say what to draw, "
                f"e.g. 'a {style.describe()} dress'.",
                param="prompt",
                code="no_subject",
            )
        if not self.encoder.is_known(subject):
            raise BadRequest(
                f"The prompt has no word the model knows ('{subject}'); describe a piece of "
                f"clothing, e.g. one of: {CLASS_LIST}.",
                param="prompt",
                code="unknown_prompt",
            )
        encoded = self.encoder.encode(subject)
        reading = PromptReading(
            subject=subject,
            style=style.describe(),
            nearest_class=encoded.nearest_class,
            similarity=round(encoded.similarity, 4),
            in_domain=encoded.similarity >= self.ood_threshold,
        )
        return style, reading

    def check_steps(self, sampler: Sampler, steps: int) -> None:
        if steps > self.max_steps:
            raise BadRequest(
                f"steps must be at most {self.max_steps} (got {steps}); "
                "DDIM gives good images in 25-50.",
                param="steps",
                code="too_many_steps",
            )

    def generate(self, job: GenerationJob) -> GenerationResult:
        generator = self.generators.get(job.model)
        if generator is None:
            raise ServiceUnavailable(
                f"The {job.model} model is not loaded.", code="model_not_loaded"
            )
        style, reading = self.read_prompt(job.prompt)
        self.check_steps(job.sampler, job.steps)
        caption = self.encoder.encode(reading.subject).embedding
        with self._lock:
            grays = generator.generate(
                caption,
                job.n,
                job.seed,
                steps=job.steps,
                guidance_scale=job.guidance_scale,
                sampler=job.sampler,
            )
        pngs = [encode_png(apply_style(g, style, job.size)) for g in grays]
        note = None if reading.in_domain else out_of_domain_note(reading)
        return GenerationResult(pngs, reading, note)


def b64(png: bytes) -> str:
    return base64.b64encode(png).decode("ascii")
