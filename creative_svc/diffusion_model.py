"""The caption-conditioned diffusion UNet: diffusers' `UNet2DModel` plus a caption projection.

    e   = MiniLM(caption)                      (384,) unit vector, or the learned null
    a   = softmax(R e / tau)                   (10,) affinity to the class reference captions
    f   = [s (e - m) ; a]                      (394,) centred, scaled embedding + affinities
    c   = W2 SiLU(W1 f)                        (128,) = the UNet's time-embedding width
    eps = UNet(x_t, t, class_labels=c)         the UNet adds c to its time embedding

R (mean embedding of each class's training captions) and m (mean of all) are
fixed buffers set by the training script. Captions of different garments are
close in MiniLM space (cosine 0.5-0.7), so the raw embedding is a weak signal
that a CPU-sized training run barely learned to use; centring it and adding the
affinities makes "which garment" stand out, while paraphrases still land on
their class through the similarity.

`class_embed_type="identity"` makes the UNet add `class_labels` to the timestep
embedding of every ResNet block, so the caption steers every resolution. For
classifier-free guidance the caption's features are swapped for the "no caption"
features (a learned vector, equal affinity to every class) during training
(condition dropout); sampling mixes the two predictions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["CaptionUNet", "DiffusionConfig", "make_noise_scheduler"]

EMBED_DIM = 384  # all-MiniLM-L6-v2


@dataclass(frozen=True)
class DiffusionConfig:
    sample_size: int = 28  # Fashion-MNIST's own size: 28 -> 14 -> 7 over three levels
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    down_block_types: tuple[str, ...] = ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    up_block_types: tuple[str, ...] = ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    layers_per_block: int = 1
    norm_num_groups: int = 8
    attention_head_dim: int = 32
    # FiLM: the time + caption embedding scales and shifts each ResNet block's normalised
    # features (ADM's "scale_shift"), a stronger hold than the added bias of "default".
    resnet_time_scale_shift: str = "scale_shift"
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"  # cosine: small images lose signal too fast on linear
    n_classes: int = 10  # class reference captions the affinity is measured against
    affinity_temperature: float = 0.02  # sharp: a class caption's affinity is ~one-hot
    caption_scale: float = 4.0  # centred embeddings have small entries; scaled to O(1)
    # The "no caption" of guidance: "uniform" = a learned vector with equal affinity to every
    # class; "embedding" (before 2026-11-28) sent a learned embedding through the affinity
    # softmax, which drifted to one class (shirt) and made guidance push away from it.
    null_condition: str = "uniform"
    # Anything the training run wants to record (command, images seen, minutes).
    training: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def time_embed_dim(self) -> int:
        return self.block_out_channels[0] * 4  # what UNet2DModel derives


def make_noise_scheduler(cfg: DiffusionConfig) -> DDPMScheduler:
    """The DDPM schedule the model is trained with (and whose config samplers copy)."""
    return DDPMScheduler(  # type: ignore[no-untyped-call, unused-ignore]
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type="epsilon",
        clip_sample=True,
    )


class CaptionUNet(nn.Module):
    def __init__(self, cfg: DiffusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.unet = UNet2DModel(  # type: ignore[no-untyped-call, unused-ignore]
            sample_size=cfg.sample_size,
            in_channels=1,
            out_channels=1,
            block_out_channels=cfg.block_out_channels,
            down_block_types=cfg.down_block_types,
            up_block_types=cfg.up_block_types,
            layers_per_block=cfg.layers_per_block,
            norm_num_groups=cfg.norm_num_groups,
            attention_head_dim=cfg.attention_head_dim,
            resnet_time_scale_shift=cfg.resnet_time_scale_shift,
            class_embed_type="identity",
        )
        d = cfg.time_embed_dim
        features = EMBED_DIM + cfg.n_classes
        self.caption_proj = nn.Sequential(nn.Linear(features, d), nn.SiLU(), nn.Linear(d, d))
        # The "no caption" condition of classifier-free guidance, learned like any weight.
        self.null_embedding = nn.Parameter(torch.zeros(EMBED_DIM))
        self.class_refs: torch.Tensor
        self.caption_mean: torch.Tensor
        self.register_buffer("class_refs", torch.zeros(cfg.n_classes, EMBED_DIM))
        self.register_buffer("caption_mean", torch.zeros(EMBED_DIM))

    def set_references(self, bank: torch.Tensor) -> None:
        """R and m from the training captions' embeddings (n_classes, K, 384)."""
        refs = bank.mean(1)
        self.class_refs.copy_(refs / refs.norm(dim=1, keepdim=True))
        self.caption_mean.copy_(bank.reshape(-1, bank.shape[-1]).mean(0))

    def condition(self, caption: torch.Tensor) -> torch.Tensor:
        """(B, 384) caption embeddings -> (B, 394) features f."""
        affinity = torch.softmax(caption @ self.class_refs.T / self.cfg.affinity_temperature, -1)
        centred = (caption - self.caption_mean) * self.cfg.caption_scale
        return torch.cat([centred, affinity], dim=-1)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        caption: torch.Tensor,
        drop: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted noise (B, 1, H, W) for x_t (B, 1, H, W), steps t (B,), captions (B, 384).

        `drop` (B,) bool: rows that get the "no caption" condition instead of theirs.
        """
        features = self.condition(caption)
        if drop is not None:
            features = torch.where(drop[:, None], self.null_features(), features)
        cond = self.caption_proj(features)  # (B, 128)
        out: torch.Tensor = self.unet(x, t, class_labels=cond).sample  # type: ignore[operator, unused-ignore]
        return out

    def null_features(self) -> torch.Tensor:
        """(394,) features f of the "no caption" condition."""
        if self.cfg.null_condition == "embedding":
            return self.condition(self.null_embedding[None])[0]
        uniform = self.null_embedding.new_full((self.cfg.n_classes,), 1 / self.cfg.n_classes)
        return torch.cat([self.null_embedding, uniform])

    def save(self, directory: Path) -> None:
        """config.json + model.safetensors (fp16: half the bytes, no loss that shows in samples)."""
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to(torch.float16).contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps(asdict(self.cfg), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> CaptionUNet:
        raw: dict[str, Any] = json.loads((directory / "config.json").read_text())
        for key in ("block_out_channels", "down_block_types", "up_block_types"):
            raw[key] = tuple(raw[key])  # JSON has lists; the frozen config holds tuples
        raw.setdefault("resnet_time_scale_shift", "default")  # written before the option
        raw.setdefault("null_condition", "embedding")  # likewise
        cfg = DiffusionConfig(**raw)
        model = cls(cfg)
        state = load_file(str(directory / "model.safetensors"))
        model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
        return model.eval()
