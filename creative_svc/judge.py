"""Our Fashion-MNIST classifier: it judges generated images (prompt adherence, Frechet distance).

A small CNN (about 0.45M parameters). `features` is its penultimate layer, the
space in which `bench/creative_eval.py` computes the Frechet distance (FID
computed on Inception features is the same recipe on a bigger judge).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

__all__ = ["FEATURE_DIM", "FashionJudge", "image_to_judge_input"]

FEATURE_DIM = 128


class FashionJudge(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2),  # 7x7
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.Dropout(0.25),
        )  # fmt: skip
        self.fc = nn.Linear(64 * 7 * 7, FEATURE_DIM)
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) in [-1, 1] -> (B, 128)."""
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(F.dropout(self.features(x), 0.3, self.training))
        return out  # (B, 10) logits

    def save(self, directory: Path, meta: dict[str, object]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        # fp16 halves the bytes; integer buffers (BatchNorm's counter) stay integers.
        state = {
            k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v
            for k, v in self.state_dict().items()
        }
        save_file(state, str(directory / "model.safetensors"))
        (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> FashionJudge:
        model = cls()
        state = load_file(str(directory / "model.safetensors"))
        model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in state.items()})
        return model.eval()


def image_to_judge_input(image: Image.Image) -> torch.Tensor:
    """A generated image (any size, RGB or L) -> (1, 1, 28, 28) in [-1, 1], as the judge sees."""
    gray = image.convert("L").resize((28, 28), Image.Resampling.BOX)
    array = np.asarray(gray, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array)[None, None]
