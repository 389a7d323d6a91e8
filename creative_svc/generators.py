"""The two image generators behind one interface: caption embedding + seed -> grayscale images.

Image i of a request starts from noise drawn with seed `seed + i`, so the same
request gives the same images, a different seed different ones, and `n=4`
begins with the image `n=1` gives (up to the float rounding of a larger batch,
which may tip a pixel to the next grey level).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from creative_svc.diffusion_model import CaptionUNet, make_noise_scheduler
from creative_svc.gan_model import CaptionGenerator

__all__ = ["DiffusionGenerator", "GanGenerator", "ImageGenerator", "Sampler"]

Sampler = Literal["ddim", "ddpm"]


class ImageGenerator(Protocol):
    name: str

    def generate(
        self,
        caption: np.ndarray,
        n: int,
        seed: int,
        *,
        steps: int,
        guidance_scale: float,
        sampler: Sampler,
    ) -> np.ndarray:
        """(n, 28, 28) float32 in [0, 1], garment bright on black."""
        ...


def _generators(seed: int, n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def _to_unit(x: torch.Tensor) -> np.ndarray:
    out: np.ndarray = ((x.float().clamp(-1, 1) + 1) / 2)[:, 0].numpy()
    return out


class DiffusionGenerator:
    """Classifier-free guided sampling of `CaptionUNet` with diffusers' DDIM or DDPM scheduler.

    eps = eps(x, null) + guidance_scale * (eps(x, caption) - eps(x, null));
    guidance_scale 1 is the plain conditional model, 0 the unconditional one.

    Guidance applies only at timesteps <= `guidance_max_t` (Kynkaanniemi et al. 2024,
    "Applying guidance in a limited interval"): at the noisiest steps, where x0 is
    predicted from almost pure noise, amplified differences get clipped into shapes of
    another garment; the plain conditional prediction is used there (one forward, not two).
    """

    name = "diffusion"

    def __init__(self, model: CaptionUNet, guidance_max_t: int | None = None) -> None:
        self.model = model.eval()
        self.train_timesteps = model.cfg.num_train_timesteps
        self.guidance_max_t = self.train_timesteps if guidance_max_t is None else guidance_max_t
        self._config: Any = make_noise_scheduler(model.cfg).config  # type: ignore[attr-defined, unused-ignore]

    @classmethod
    def load(cls, directory: Path, guidance_max_t: int | None = None) -> DiffusionGenerator:
        return cls(CaptionUNet.load(directory), guidance_max_t)

    def scheduler(self, sampler: Sampler) -> Any:
        """A fresh DDIM or DDPM scheduler (they hold per-run state: the timesteps)."""
        kind: Any = DDIMScheduler if sampler == "ddim" else DDPMScheduler
        return kind.from_config(self._config)

    @torch.inference_mode()
    def generate(
        self,
        caption: np.ndarray,
        n: int,
        seed: int,
        *,
        steps: int,
        guidance_scale: float,
        sampler: Sampler = "ddim",
    ) -> np.ndarray:
        size = self.model.cfg.sample_size
        gens = _generators(seed, n)
        x = torch.cat([torch.randn(1, 1, size, size, generator=g) for g in gens])  # (n, 1, H, W)
        cond = torch.from_numpy(caption).float().expand(n, -1)  # (n, 384)
        both = torch.cat([cond, cond])
        drop = torch.arange(2 * n) >= n  # second half: no caption
        scheduler = self.scheduler(sampler)
        scheduler.set_timesteps(steps)
        for t in scheduler.timesteps:
            if guidance_scale != 1.0 and int(t) <= self.guidance_max_t:
                eps = self.model(torch.cat([x, x]), t.expand(2 * n), both, drop)
                eps_cond, eps_null = eps.chunk(2)
                eps = eps_null + guidance_scale * (eps_cond - eps_null)
            else:
                eps = self.model(x, t.expand(n), cond)
            if sampler == "ddim":
                x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            else:
                x = scheduler.step(eps, t, x, generator=gens).prev_sample
        return _to_unit(x)


class GanGenerator:
    """One generator forward pass per image; `steps` and `guidance_scale` do not apply."""

    name = "gan"

    def __init__(self, model: CaptionGenerator) -> None:
        self.model = model.eval()

    @classmethod
    def load(cls, directory: Path) -> GanGenerator:
        return cls(CaptionGenerator.load(directory))

    @torch.inference_mode()
    def generate(
        self,
        caption: np.ndarray,
        n: int,
        seed: int,
        *,
        steps: int = 0,
        guidance_scale: float = 1.0,
        sampler: Sampler = "ddim",
    ) -> np.ndarray:
        z_dim = self.model.cfg.z_dim
        z = torch.cat([torch.randn(1, z_dim, generator=g) for g in _generators(seed, n)])
        cond = torch.from_numpy(caption).float().expand(n, -1)
        return _to_unit(self.model(z, cond))
