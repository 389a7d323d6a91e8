"""The router's intent classifier on the held-out split, and `/v1/route` latency.

    .venv/bin/python -m bench.intent_eval                  # accuracy, F1, latency (200 requests)
    .venv/bin/python -m bench.intent_eval --requests 500

Quality: accuracy, macro-F1, per-intent F1 and the confusion matrix of the
trained, calibrated head on `router_svc/data/intents.jsonl`'s test split
(never seen in training), next to two references in the same run: the
majority class, and a nearest-centroid classifier on the same MiniLM
embeddings (no training beyond class means). Also the expected calibration
error of the confidences, and how many test utterances fall below the
threshold (those get the safe plan).

Latency: a real router_svc process on a free port answering `POST /v1/route`
for the test utterances in turn (one client, keep-alive), p50 / p95 / p99,
against the reference of the same classification in-process (the floor that
HTTP and JSON add to). Goals: accuracy >= 0.95, p50 < 20 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from common.contracts.router import INTENTS
from common.minilm import MiniLMEmbedder
from router_svc.classifier import IntentClassifier
from router_svc.intent_data import load_examples
from router_svc.intent_head import IntentHead
from router_svc.settings import RouterSettings
from router_svc.train_intent import expected_calibration_error
from tests.helpers.servers import start_service


def f1_scores(y: np.ndarray, predicted: np.ndarray, k: int) -> np.ndarray:
    scores = np.zeros(k)
    for c in range(k):
        tp = np.sum((predicted == c) & (y == c))
        fp = np.sum((predicted == c) & (y != c))
        fn = np.sum((predicted != c) & (y == c))
        scores[c] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return scores


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def quality(embedder: MiniLMEmbedder, head: IntentHead, threshold: float) -> None:
    train, test = load_examples(split="train"), load_examples(split="test")
    labels = list(head.labels)
    y_train = np.array([labels.index(e.intent) for e in train])
    y = np.array([labels.index(e.intent) for e in test])
    x_train = embedder.encode([e.text for e in train])
    x = embedder.encode([e.text for e in test])

    probs = head.probabilities(x)
    ours = probs.argmax(1)
    centroids = np.stack([x_train[y_train == c].mean(0) for c in range(len(labels))])
    centroid = (x @ centroids.T).argmax(1)
    majority = np.full_like(y, np.bincount(y_train).argmax())

    k = len(labels)
    print(f"held-out test split: {len(test)} utterances, {k} intents\n")
    print(f"{'classifier':<34}{'accuracy':>10}{'macro-F1':>10}")
    rows = [
        ("majority class (reference)", majority),
        ("nearest centroid (reference)", centroid),
        ("calibrated logistic head (ours)", ours),
    ]
    for name, predicted in rows:
        accuracy = float((predicted == y).mean())
        print(f"{name:<34}{accuracy:>10.4f}{f1_scores(y, predicted, k).mean():>10.4f}")
    ours_acc = float((ours == y).mean())
    ref_acc = float((centroid == y).mean())
    print(f"\nerror ratio ours / nearest centroid: {(1 - ours_acc) / max(1e-9, 1 - ref_acc):.2f}")

    print("\nper-intent F1 (ours): ", end="")
    print(", ".join(f"{n} {s:.3f}" for n, s in zip(labels, f1_scores(y, ours, k), strict=True)))
    print("\nconfusion matrix (rows: true, columns: predicted)")
    print(" " * 11 + "".join(f"{n[:9]:>10}" for n in labels))
    for c, name in enumerate(labels):
        counts = [int(np.sum((y == c) & (ours == p))) for p in range(k)]
        print(f"{name:<11}" + "".join(f"{n:>10}" for n in counts))

    confidence = probs.max(1)
    below = confidence < threshold
    print(f"\nexpected calibration error: {expected_calibration_error(probs, y):.4f}")
    print(
        f"below threshold {threshold:.2f}: {int(below.sum())} of {len(y)} (safe plan); accuracy "
        f"above it: {float((ours[~below] == y[~below]).mean()):.4f}"
    )
    wrong = [(test[i], labels[ours[i]], confidence[i]) for i in np.flatnonzero(ours != y)]
    if wrong:
        print("\nerrors:")
        for example, predicted_label, conf in wrong:
            print(f"  {example.intent:>9} -> {predicted_label:<9} {conf:.2f}  {example.text}")


def latency(embedder: MiniLMEmbedder, head: IntentHead, requests: int) -> None:
    texts = [e.text for e in load_examples(split="test")]
    texts = (texts * (requests // len(texts) + 1))[:requests]
    classifier = IntentClassifier(embedder, head)
    for text in texts[:10]:
        classifier.classify(text)
    in_process = []
    for text in texts:
        started = time.perf_counter()
        classifier.classify(text)
        in_process.append((time.perf_counter() - started) * 1000)

    with tempfile.TemporaryDirectory() as tmp:
        server = start_service("router_svc", Path(tmp), env={"ROUTER_LOG_LEVEL": "WARNING"})
        try:
            over_http = []
            with httpx.Client(base_url=server.url, timeout=10) as client:
                for text in texts[:10]:
                    client.post("/v1/route", json={"text": text}).raise_for_status()
                for text in texts:
                    started = time.perf_counter()
                    client.post("/v1/route", json={"text": text}).raise_for_status()
                    over_http.append((time.perf_counter() - started) * 1000)
        finally:
            server.stop()

    print(f"\n{'latency, ms':<34}{'p50':>8}{'p95':>8}{'p99':>8}")
    for name, values in (
        ("classify in-process (reference)", in_process),
        ("POST /v1/route over HTTP", over_http),
    ):
        p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
        print(f"{name:<34}{p50:>8.1f}{p95:>8.1f}{p99:>8.1f}")
    ratio = statistics.median(over_http) / statistics.median(in_process)
    print(f"p50 ratio HTTP / in-process: {ratio:.2f} ({len(texts)} requests, one client)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = RouterSettings()
    embedder = MiniLMEmbedder(threads=settings.embedding_threads, dtype=settings.embedding_dtype)
    head = IntentHead.load(settings.intent_weights_path())
    assert head.labels == INTENTS
    quality(embedder, head, settings.confidence_threshold)
    if not args.skip_latency:
        latency(embedder, head, args.requests)


if __name__ == "__main__":
    main()
