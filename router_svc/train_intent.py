"""Train the router's intent model: `python -m router_svc.train_intent`.

1. Embed every utterance of `router_svc/data/intents.jsonl` with all-MiniLM-L6-v2.
2. Fit multinomial logistic regression (full-batch L-BFGS, L2 penalty) on the
   train split, once per penalty in a small grid; keep the penalty with the
   best validation accuracy (ties: lower validation log-loss).
3. Fit the softmax temperature on the validation split (temperature scaling)
   so that probabilities are calibrated; report the expected calibration
   error before and after.
4. Write `router_svc/weights/intent_head.safetensors` (a few KB).

The test split is never read here (bench/intent_eval.py evaluates on it).
Deterministic, CPU only, about half a minute on two cores.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from common.contracts.router import INTENTS
from common.minilm import MiniLMEmbedder
from router_svc.intent_data import DATASET, Example, load_examples
from router_svc.intent_head import DEFAULT_WEIGHTS, IntentHead

__all__ = ["expected_calibration_error", "fit_logistic", "fit_temperature", "main"]

PENALTIES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)


def embed(embedder: MiniLMEmbedder, examples: list[Example], batch: int = 32) -> np.ndarray:
    out = []
    with tqdm(total=len(examples), desc="embedding", unit="utt", file=sys.stderr) as bar:
        for start in range(0, len(examples), batch):
            chunk = examples[start : start + batch]
            out.append(embedder.encode([e.text for e in chunk]))
            bar.update(len(chunk))
    return np.concatenate(out)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, n_classes: int, penalty: float
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (K, D) and bias (K,) minimising mean cross-entropy + penalty * ||W||²."""
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y).long()
    weight = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(xt @ weight.T + bias, yt) + penalty * weight.pow(2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    return weight.detach().float().numpy(), bias.detach().float().numpy()


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature T > 0 that minimises the log-loss of softmax(logits / T)."""
    z, yt = torch.from_numpy(logits).double(), torch.from_numpy(y).long()
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z / log_t.exp(), yt)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]
    return float(log_t.exp().item())


def log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATASET)
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    started = time.perf_counter()

    labels = tuple(INTENTS)
    index: dict[str, int] = {label: i for i, label in enumerate(labels)}
    train, val = load_examples(args.data, "train"), load_examples(args.data, "val")
    embedder = MiniLMEmbedder(threads=max(1, min(2, os.cpu_count() or 1)))
    x_train, x_val = embed(embedder, train), embed(embedder, val)
    y_train = np.array([index[e.intent] for e in train])
    y_val = np.array([index[e.intent] for e in val])

    best: tuple[float, float, float, np.ndarray, np.ndarray] | None = None
    for penalty in tqdm(PENALTIES, desc="penalty grid", file=sys.stderr):
        weight, bias = fit_logistic(x_train, y_train, len(labels), penalty)
        head = IntentHead(labels, weight, bias)
        probs = head.probabilities(x_val)
        accuracy = float((probs.argmax(1) == y_val).mean())
        loss = log_loss(probs, y_val)
        print(f"penalty {penalty:g}: val accuracy {accuracy:.4f}, val log-loss {loss:.4f}")
        if best is None or (accuracy, -loss) > (best[1], -best[2]):
            best = (penalty, accuracy, loss, weight, bias)
    assert best is not None
    penalty, accuracy, _, weight, bias = best

    uncalibrated = IntentHead(labels, weight, bias)
    temperature = fit_temperature(uncalibrated.logits(x_val), y_val)
    calibrated = IntentHead(labels, weight, bias, temperature)
    before, after = uncalibrated.probabilities(x_val), calibrated.probabilities(x_val)
    train_accuracy = float((calibrated.probabilities(x_train).argmax(1) == y_train).mean())
    metrics = {
        "penalty": penalty,
        "temperature": round(temperature, 4),
        "train_examples": len(train),
        "val_examples": len(val),
        "train_accuracy": round(train_accuracy, 4),
        "val_accuracy": round(accuracy, 4),
        "val_log_loss_before": round(log_loss(before, y_val), 4),
        "val_log_loss_after": round(log_loss(after, y_val), 4),
        "val_ece_before": round(expected_calibration_error(before, y_val), 4),
        "val_ece_after": round(expected_calibration_error(after, y_val), 4),
    }
    final = IntentHead(
        labels,
        weight,
        bias,
        temperature,
        metadata={
            "embedding_model": embedder.model_name,
            "command": "python -m router_svc.train_intent",
            "dataset": "router_svc/data/intents.jsonl",
            **metrics,
        },
    )
    final.save(args.out)
    # safetensors writes 0600; the service may run as another user (its container does).
    args.out.chmod(0o644)
    for name, value in metrics.items():
        print(f"{name}: {value}")
    size = args.out.stat().st_size
    elapsed = time.perf_counter() - started
    print(f"wrote {args.out} ({size} bytes) in {elapsed:.1f}s")
    if not math.isfinite(temperature):
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
