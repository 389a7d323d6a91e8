"""The projector: encoder patch features -> LM input embeddings (LLaVA-1.5's MLP).

The patch grid is average-pooled to `tokens_grid` x `tokens_grid` first: every image
token is a prompt position the LM prefills, and a few tokens carry what a 28x28
garment shows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["Projector", "ProjectorConfig"]


@dataclass(frozen=True)
class ProjectorConfig:
    feature_size: int  # the encoder's hidden size
    patch_grid: int  # the encoder's patches per side
    tokens_grid: int  # image tokens per side after pooling
    lm_hidden_size: int  # the LM's embedding width

    @property
    def tokens_per_image(self) -> int:
        return self.tokens_grid * self.tokens_grid

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class Projector(nn.Module):
    def __init__(self, config: ProjectorConfig) -> None:
        super().__init__()
        self.config = config
        self.fc1 = nn.Linear(config.feature_size, config.lm_hidden_size)
        self.fc2 = nn.Linear(config.lm_hidden_size, config.lm_hidden_size)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """patches (N, P, C) row-major over the grid -> (N, tokens_per_image, lm_hidden)."""
        n, _, c = patches.shape
        g = self.config.patch_grid
        grid = patches.transpose(1, 2).reshape(n, c, g, g)
        pooled = F.adaptive_avg_pool2d(grid, self.config.tokens_grid)  # (N, C, t, t)
        tokens = pooled.flatten(2).transpose(1, 2)  # (N, t * t, C)
        out: torch.Tensor = self.fc2(F.gelu(self.fc1(tokens)))
        return out
