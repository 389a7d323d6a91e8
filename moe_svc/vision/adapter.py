"""The trained vision adapter: images -> LM input embeddings for the image slots of a prompt.

    adapter = VisionAdapter.load()  # the committed artefact, DEFAULT_DIR
    prompt = encode(tokenizer, text, adapter.tokens_per_image)
    image_tokens = adapter.embed(images)  # (N, tokens_per_image, hidden)

Images are `moe_svc.vision.preprocess.to_model_input` tensors, stacked. The artefact
(`moe_svc.vision.train`) is `model.safetensors` (fp16) and `meta.json`, which holds
the two modules' configs, the LM it was trained against and its measured accuracies.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from moe_svc.vision.encoder import EncoderConfig, EncoderOutput, VisionEncoder
from moe_svc.vision.projector import Projector, ProjectorConfig

__all__ = ["DEFAULT_DIR", "VisionAdapter"]

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "artefacts" / "vision"


class VisionAdapter(nn.Module):
    def __init__(
        self, encoder: VisionEncoder, projector: Projector, meta: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.meta = meta or {}

    @property
    def tokens_per_image(self) -> int:
        return self.projector.config.tokens_per_image

    @property
    def hidden_size(self) -> int:
        return self.projector.config.lm_hidden_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) -> (N, tokens_per_image, hidden): differentiable, for training."""
        encoded: EncoderOutput = self.encoder(images)
        tokens: torch.Tensor = self.projector(encoded.patches)
        return tokens

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) in [-1, 1] -> (N, tokens_per_image, hidden) float32 image tokens."""
        out: torch.Tensor = self(images.float())
        return out

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, 28, 28) -> (N, 10) logits of the encoder's own head (Fashion-MNIST's labels)."""
        encoded: EncoderOutput = self.encoder(images.float())
        return encoded.logits

    def save(self, directory: Path, meta: dict[str, Any]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # fp16 halves the bytes; integer buffers (BatchNorm's counters) stay integers
        state = {
            k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v
            for k, v in self.state_dict().items()
        }
        save_file(state, str(directory / "model.safetensors"))
        meta = {
            **meta,
            "encoder": self.encoder.config.to_dict(),
            "projector": self.projector.config.to_dict(),
            "tokens_per_image": self.tokens_per_image,
            "hidden_size": self.hidden_size,
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path = DEFAULT_DIR) -> VisionAdapter:
        """The adapter saved in `directory`, in eval mode, float32."""
        meta = json.loads((directory / "meta.json").read_text())
        adapter = cls(
            VisionEncoder(EncoderConfig(**meta["encoder"])),
            Projector(ProjectorConfig(**meta["projector"])),
            meta,
        )
        state = load_file(str(directory / "model.safetensors"))
        adapter.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        )
        return adapter.eval()
