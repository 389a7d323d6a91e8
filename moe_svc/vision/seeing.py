"""What the served model sees of a request's images: decoded, checked, encoded, projected.

`Vision.load` gives the committed encoder and projector to the model they were trained
against, and to no other: a model with another embedding space would read the image
tokens as noise, so it serves text only and refuses images (400 images_not_supported).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import torch
from PIL import Image

from common.contracts.openai import ChatMessageIn
from common.image_input import ImageLimits, decode_images
from moe_svc.modeling import CausalLM
from moe_svc.vision.adapter import VisionAdapter
from moe_svc.vision.preprocess import to_model_input

__all__ = ["Vision", "embedding_fingerprint"]

logger = logging.getLogger(__name__)


def embedding_fingerprint(model: CausalLM) -> list[float]:
    """A few numbers that tell the token embedding the projector was trained into."""
    weight = model.model.embed_tokens.weight.detach()
    rows = weight[:: max(1, weight.shape[0] // 8)][:8].double()
    return [round(float(row.sum()), 3) for row in rows]


class Vision:
    def __init__(self, adapter: VisionAdapter, limits: ImageLimits) -> None:
        self.adapter = adapter
        self.limits = limits

    @property
    def tokens_per_image(self) -> int:
        return self.adapter.tokens_per_image

    @classmethod
    def load(cls, directory: Path, model: CausalLM, limits: ImageLimits) -> Vision | None:
        """The adapter for `model`, or None (logged) when it was trained for another model."""
        if not (directory / "meta.json").exists():
            logger.warning("no vision adapter: text only", extra={"dir": str(directory)})
            return None
        adapter = VisionAdapter.load(directory)
        wanted = adapter.meta.get("embedding_fingerprint")
        mine = embedding_fingerprint(model)
        if adapter.hidden_size != model.config.hidden_size or (
            wanted is not None and any(abs(a - b) > 1e-2 for a, b in zip(wanted, mine, strict=True))
        ):
            logger.warning(
                "the vision adapter was trained for another model: text only",
                extra={"dir": str(directory), "trained_for": adapter.meta.get("model")},
            )
            return None
        return cls(adapter, limits)

    async def see(self, messages: list[ChatMessageIn]) -> list[torch.Tensor]:
        """(tokens_per_image, C) vectors per image part, in order; 400s for bad images."""
        images = await decode_images(messages, self.limits)
        return await asyncio.to_thread(self._embed, images)

    def _embed(self, images: list[Image.Image]) -> list[torch.Tensor]:
        # the encoder is CPU work: off the event loop
        batch = torch.stack([to_model_input(image) for image in images])
        return list(self.adapter.embed(batch))
