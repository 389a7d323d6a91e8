"""The vision encoder: a small ViT over 28x28 grayscale images, with a 10-class head.

transformers' `ViTModel` (randomly initialised, nothing downloaded) with its one 7x7
patch projection swapped for a stem of three stride-2 3x3 convolutions, 28 -> 14 -> 7
-> 4: early convolutions make a small ViT train faster and generalise better (Xiao
et al., 2021), which is what 2 CPU cores and a few epochs need (0.87 test accuracy
with the plain patch projection, trained the same way). The 4x4 grid's hidden states at
`feature_layer` are what the projector turns into LM tokens; the head classifies from
the CLS token, trains the encoder (stage 1) and stays as the ceiling for the answers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from transformers import ViTConfig, ViTModel

__all__ = ["GRID", "ConvStem", "EncoderConfig", "EncoderOutput", "VisionEncoder"]

IMAGE_SIZE = 28
GRID = 4  # patches per side: the stem's output
NUM_CLASSES = 10


@dataclass(frozen=True)
class EncoderConfig:
    hidden_size: int = 128  # width of every ViT layer
    num_layers: int = 6
    num_heads: int = 4
    mlp_size: int = 256  # the ViT MLP's inner width
    stem_channels: int = 32  # the first convolution's; the second has twice as many
    # Which hidden state's patch tokens feed the projector: an index into the embeddings
    # and the layers' outputs (0 = embeddings, -1 = the last layer, then the final norm).
    # -2, the last layer's input, as LLaVA: its projector's loss fell faster than with -1
    # (1.84 against 1.95 after 44 steps, the same data).
    feature_layer: int = -2

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class EncoderOutput:
    patches: torch.Tensor  # (N, GRID * GRID, C) patch features, row-major over the grid
    logits: torch.Tensor  # (N, 10) class logits


class ConvStem(nn.Sequential):
    """(N, 1, 28, 28) -> (N, C, 4, 4): where ViTModel has its patch projection."""

    def __init__(self, channels: int, out: int) -> None:
        super().__init__(
            nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.GELU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
            nn.BatchNorm2d(2 * channels), nn.GELU(),
            nn.Conv2d(2 * channels, out, 3, stride=2, padding=1),
        )  # fmt: skip

    @property
    def weight(self) -> torch.Tensor:
        """The last convolution's: ViTModel reads its projection's dtype from here."""
        last = self[-1]
        assert isinstance(last, nn.Conv2d)
        return last.weight


class VisionEncoder(nn.Module):
    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        vit_config = ViTConfig(
            image_size=IMAGE_SIZE,
            patch_size=IMAGE_SIZE // GRID,  # sizes the position embeddings: GRID x GRID + CLS
            num_channels=1,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.mlp_size,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        self.vit = ViTModel(vit_config, add_pooling_layer=False)
        # ViTModel types its projection as the Conv2d the stem replaces
        self.vit.embeddings.patch_embeddings.projection = ConvStem(  # type: ignore[assignment]
            config.stem_channels, config.hidden_size
        )
        self.head = nn.Linear(config.hidden_size, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        """images (N, 1, 28, 28) in [-1, 1] -> patch features and class logits."""
        layer = self.config.feature_layer
        out = self.vit(pixel_values=images, output_hidden_states=layer != -1)
        final = out.last_hidden_state  # (N, 1 + P, C), CLS first, after the final norm
        features = final if layer == -1 else out.hidden_states[layer]
        return EncoderOutput(patches=features[:, 1:], logits=self.head(final[:, 0]))
