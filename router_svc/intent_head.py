"""The calibrated linear intent model: multinomial logistic regression on sentence embeddings.

    p(intent | x) = softmax((W x + b) / T)

`x` is the unit-length all-MiniLM-L6-v2 embedding of the utterance, `W, b`
are fitted by `router_svc.train_intent` on the training split, and the
temperature `T` is fitted afterwards on the validation split (temperature
scaling, Guo et al. 2017) so that the top probability can be read as the
chance that the intent is right; the router's confidence threshold relies on
that. The weights are a few KB of safetensors with the labels, temperature
and training metrics in its metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

__all__ = ["DEFAULT_WEIGHTS", "IntentHead"]

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "intent_head.safetensors"


@dataclass(frozen=True)
class IntentHead:
    labels: tuple[str, ...]
    weight: np.ndarray  # (K, D) float32
    bias: np.ndarray  # (K,) float32
    temperature: float = 1.0
    # Embedding model, training metrics and the command that made the weights.
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k, _ = self.weight.shape
        if k != len(self.labels) or self.bias.shape != (k,):
            raise ValueError(f"weights for {k} intents but {len(self.labels)} labels")
        if self.temperature <= 0:
            raise ValueError("temperature must be positive")

    @property
    def dimensions(self) -> int:
        return int(self.weight.shape[1])

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, K) uncalibrated logits."""
        logits: np.ndarray = embeddings @ self.weight.T + self.bias
        return logits

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, D) -> (N, K) calibrated probabilities (rows sum to 1)."""
        z = self.logits(embeddings) / self.temperature
        z = z - z.max(axis=1, keepdims=True)  # stable softmax
        e = np.exp(z)
        probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return probs

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {
            "labels": json.dumps(list(self.labels)),
            "temperature": repr(float(self.temperature)),
            "metadata": json.dumps(self.metadata, sort_keys=True),
        }
        tensors = {
            "weight": np.ascontiguousarray(self.weight, dtype=np.float32),
            "bias": np.ascontiguousarray(self.bias, dtype=np.float32),
        }
        save_file(tensors, str(path), metadata=meta)

    @classmethod
    def load(cls, path: Path = DEFAULT_WEIGHTS) -> IntentHead:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
        return cls(
            labels=tuple(json.loads(meta["labels"])),
            weight=tensors["weight"],
            bias=tensors["bias"],
            temperature=float(meta.get("temperature", "1.0")),
            metadata=json.loads(meta.get("metadata", "{}")),
        )
