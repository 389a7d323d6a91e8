"""The caption-conditioned DCGAN: one forward pass per image.

Generator: [z (64) ; caption projection (128)] -> 64x7x7 -> 32x14x14 -> 16x28x28 -> 1x28x28.
Discriminator: a projection discriminator (Miyato & Koyama, 2018): the score is
`w . phi(x) + <phi(x), V e>`, so it judges both realism and "is this the
captioned class"; spectral norm keeps it Lipschitz for the hinge loss.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

__all__ = ["CaptionDiscriminator", "CaptionGenerator", "GanConfig"]

EMBED_DIM = 384


@dataclass(frozen=True)
class GanConfig:
    z_dim: int = 64
    cond_dim: int = 128
    width: int = 64  # channels at 7x7; halved at each upsampling
    training: dict[str, Any] = field(default_factory=dict, compare=False)


class CaptionGenerator(nn.Module):
    def __init__(self, cfg: GanConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.caption_proj = nn.Sequential(nn.Linear(EMBED_DIM, cfg.cond_dim), nn.ReLU())
        self.stem = nn.Sequential(
            nn.Linear(cfg.z_dim + cfg.cond_dim, w * 7 * 7), nn.BatchNorm1d(w * 7 * 7), nn.ReLU()
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(w, w // 2, 4, 2, 1), nn.BatchNorm2d(w // 2), nn.ReLU(),  # 14x14
            nn.ConvTranspose2d(w // 2, w // 4, 4, 2, 1), nn.BatchNorm2d(w // 4), nn.ReLU(),  # 28x28
            nn.Conv2d(w // 4, 1, 3, padding=1), nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        """(B, z_dim) noise, (B, 384) captions -> (B, 1, 28, 28) in [-1, 1]."""
        h = self.stem(torch.cat([z, self.caption_proj(caption)], dim=1))
        out: torch.Tensor = self.up(h.view(-1, self.cfg.width, 7, 7))
        return out

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v
            for k, v in self.state_dict().items()
        }
        save_file(state, str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> CaptionGenerator:
        model = cls(GanConfig(**json.loads((directory / "config.json").read_text())))
        state = load_file(str(directory / "model.safetensors"))
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in state.items()})
        return model.eval()


class CaptionDiscriminator(nn.Module):
    def __init__(self, cfg: GanConfig) -> None:
        super().__init__()
        self.body = nn.Sequential(
            spectral_norm(nn.Conv2d(1, 32, 4, 2, 1)), nn.LeakyReLU(0.2),  # 14x14
            spectral_norm(nn.Conv2d(32, 64, 4, 2, 1)), nn.LeakyReLU(0.2),  # 7x7
            nn.Flatten(),
            spectral_norm(nn.Linear(64 * 7 * 7, 256)), nn.LeakyReLU(0.2),
        )  # fmt: skip
        self.score = spectral_norm(nn.Linear(256, 1))
        self.caption_proj = spectral_norm(nn.Linear(EMBED_DIM, 256))

    def forward(self, x: torch.Tensor, caption: torch.Tensor) -> torch.Tensor:
        phi = self.body(x)  # (B, 256)
        out: torch.Tensor = self.score(phi).squeeze(1) + (phi * self.caption_proj(caption)).sum(1)
        return out  # (B,)
