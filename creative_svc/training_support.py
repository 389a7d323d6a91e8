"""What the training scripts share: devices, caption banks, EMA, checkpoints, time limits,
and the resumable loop over batches."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from common.minilm import MiniLMEmbedder
from creative_svc.captions import training_captions

__all__ = [
    "EMA",
    "CaptionBank",
    "Deadline",
    "ResumableBatches",
    "load_compatible",
    "pick_device",
    "setup_threads",
]


def setup_threads(threads: int | None) -> None:
    """Use `threads` CPU threads (default: every core), for shared machines."""
    torch.set_num_threads(threads or os.cpu_count() or 1)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class CaptionBank:
    """Embedded training captions per class; `sample(labels)` draws one caption per image."""

    def __init__(self, embeddings: torch.Tensor) -> None:
        self.embeddings = embeddings  # (10, K, 384)

    @classmethod
    def build(cls, per_class: int = 64, seed: int = 0) -> CaptionBank:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        captions = training_captions(per_class, seed)
        embedder = MiniLMEmbedder(threads=torch.get_num_threads())
        flat = embedder.encode([c for group in captions for c in group])
        return cls(torch.from_numpy(flat).view(len(captions), per_class, -1))

    def sample(
        self, labels: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        k = self.embeddings.shape[1]
        pick = torch.randint(0, k, (labels.shape[0],), generator=generator)
        return self.embeddings[labels.cpu(), pick]  # (B, 384)


class EMA:
    """Exponential moving average of weights; the averaged copy is what gets shipped."""

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        # Warm-up: early averages would otherwise be dominated by the random init.
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1 - d)
        self.copy_buffers(model)

    @torch.no_grad()
    def copy_buffers(self, model: nn.Module) -> None:
        """Buffers (BatchNorm's running statistics) are taken as they are, not averaged."""
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]


class Deadline:
    """Stops a run after `minutes` of wall time (None: never), so it fits a session."""

    def __init__(self, minutes: float | None) -> None:
        self.end = None if minutes is None else time.monotonic() + 60 * minutes

    def passed(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


def atomic_save(obj: Any, path: Path) -> None:
    """Write then rename, so an interrupted save never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def load_compatible(model: nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Load the entries of `state` whose names and shapes fit `model`; the names left out."""
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fitting, strict=False)
    return sorted(set(own) - set(fitting))


class ResumableBatches:
    """Index batches over `n` images, epoch after epoch, from `step` on.

    Each epoch has one fixed permutation (seeded by the epoch), so a run resumed at a
    step continues with the batch it would have had. Iteration stops after
    `total_steps` or at the deadline; it counts steps and training seconds (`step`,
    `seconds`, what a checkpoint records), shows a progress bar (`bar`, for the
    caller's postfix), and calls `save` every `save_every` steps and once at the end.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        total_steps: int,
        *,
        step: int,
        seconds: float,
        max_minutes: float | None,
        save_every: int,
        save: Callable[[], None],
        desc: str,
    ) -> None:
        self.n, self.batch_size, self.total_steps = n, batch_size, total_steps
        self.steps_per_epoch = n // batch_size
        self.step, self.seconds = step, seconds
        self.deadline = Deadline(max_minutes)
        self.save_every, self.save = save_every, save
        self.bar = tqdm(total=total_steps, initial=step, desc=desc, unit="step", mininterval=5)

    def _more(self) -> bool:
        return self.step < self.total_steps and not self.deadline.passed()

    def __iter__(self) -> Iterator[torch.Tensor]:
        while self._more():
            epoch, offset = divmod(self.step, self.steps_per_epoch)
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(epoch))
            for i in range(offset, self.steps_per_epoch):
                if not self._more():
                    break
                started = time.perf_counter()
                yield order[i * self.batch_size : (i + 1) * self.batch_size]
                self.step += 1
                self.seconds += time.perf_counter() - started
                self.bar.update(1)
                if self.step % self.save_every == 0:
                    self.save()
        self.bar.close()
        self.save()
        images = self.step * self.batch_size
        print(f"done: {self.step} steps, {images} images, {self.seconds / 60:.1f} min", flush=True)
