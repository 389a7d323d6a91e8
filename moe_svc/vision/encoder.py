"""The vision encoder: a small ViT over 28x28 grayscale images, with a 10-class head.

The ViT (transformers' `ViTModel`, randomly initialised, nothing downloaded) cuts the
image into a grid of patches; the patches' hidden states at `feature_layer` are what
the projector turns into LM tokens. The head classifies from the CLS token and is what
trains the encoder (stage 1); it stays as the ceiling an answer can reach.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers import ViTConfig, ViTModel

__all__ = ["EncoderConfig", "EncoderOutput", "VisionEncoder"]

NUM_CLASSES = 10


@dataclass(frozen=True)
class EncoderConfig:
    image_size: int = 28  # pixels per side (Fashion-MNIST's)
    patch_size: int = 7  # pixels per patch side: a 4x4 grid of patches
    hidden_size: int = 128  # width of every ViT layer
    num_layers: int = 6
    num_heads: int = 4
    mlp_size: int = 256  # the ViT MLP's inner width
    # Which hidden state's patch tokens feed the projector: an index into the embeddings
    # and the layers' outputs (0 = embeddings, -1 = the last layer, then the final norm).
    feature_layer: int = -1

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class EncoderOutput:
    patches: torch.Tensor  # (N, grid * grid, C) patch features, row-major over the grid
    logits: torch.Tensor  # (N, 10) class logits


class VisionEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        vit_config = ViTConfig(
            image_size=config.image_size,
            patch_size=config.patch_size,
            num_channels=1,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.mlp_size,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.vit = ViTModel(vit_config, add_pooling_layer=False)
        self.head = nn.Linear(config.hidden_size, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        """images (N, 1, 28, 28) in [-1, 1] -> patch features and class logits."""
        layer = self.config.feature_layer
        out = self.vit(pixel_values=images, output_hidden_states=layer != -1)
        final = out.last_hidden_state  # (N, 1 + P, C), CLS first, after the final norm
        features = final if layer == -1 else out.hidden_states[layer]
        return EncoderOutput(patches=features[:, 1:], logits=self.head(final[:, 0]))
