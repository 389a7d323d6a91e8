"""The trained classifier on the real MiniLM encoder: data, weights, calibration, follow-ups."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from common.contracts.router import INTENTS
from common.minilm import MiniLMEmbedder
from router_svc.classifier import IntentClassifier
from router_svc.intent_data import load_examples
from router_svc.intent_head import DEFAULT_WEIGHTS, IntentHead
from router_svc.train_intent import expected_calibration_error, fit_temperature


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


@pytest.fixture(scope="module")
def classifier(embedder: MiniLMEmbedder) -> IntentClassifier:
    return IntentClassifier(embedder, IntentHead.load())


def test_the_dataset_is_large_varied_and_cleanly_split() -> None:
    examples = load_examples()
    per_intent = Counter(e.intent for e in examples)
    assert set(per_intent) == set(INTENTS) and min(per_intent.values()) >= 150
    texts = [e.text.lower().strip(" ?!.") for e in examples]
    assert len(texts) == len(set(texts)), "an utterance appears twice"
    for intent in INTENTS:
        splits = Counter(e.split for e in examples if e.intent == intent)
        assert splits["test"] >= 30 and splits["val"] >= 20 and splits["train"] >= 100
    lengths = [len(e.text.split()) for e in examples]
    assert min(lengths) <= 2 and max(lengths) >= 25  # short and long


def test_committed_weights_are_small_and_calibrated() -> None:
    head = IntentHead.load(DEFAULT_WEIGHTS)
    assert DEFAULT_WEIGHTS.stat().st_size < 16_000
    assert head.labels == INTENTS and head.dimensions == 384
    assert head.metadata["embedding_model"] == "all-MiniLM-L6-v2"
    assert head.metadata["val_ece_after"] <= head.metadata["val_ece_before"]
    assert head.temperature > 0


def test_weights_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    head = IntentHead(
        INTENTS,
        rng.normal(size=(5, 8)).astype(np.float32),
        np.zeros(5, np.float32),
        1.7,
        {"note": "x"},
    )
    head.save(tmp_path / "h.safetensors")
    loaded = IntentHead.load(tmp_path / "h.safetensors")
    x = rng.normal(size=(3, 8)).astype(np.float32)
    assert np.allclose(loaded.probabilities(x), head.probabilities(x))
    assert loaded.metadata == {"note": "x"} and loaded.temperature == 1.7


def test_temperature_scaling_fixes_overconfidence() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, size=2000)
    logits = rng.normal(size=(2000, 3))
    logits[np.arange(2000), y] += 1.0
    overconfident = logits * 6  # right 60-70 % of the time, but nearly certain
    t = fit_temperature(overconfident, y)

    def probs(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(1, keepdims=True))
        out: np.ndarray = e / e.sum(1, keepdims=True)
        return out

    assert 4 < t < 8
    assert expected_calibration_error(probs(overconfident / t), y) < 0.05
    assert expected_calibration_error(probs(overconfident), y) > 0.2


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Who invented the telephone?", "factual"),
        ("A farmer has 30 heads and 74 legs. How many cows?", "reasoning"),
        ("Write a haiku about the sea", "creative"),
        ("Draw a handbag", "creative"),
        ("Convert 72 F to C", "tool"),
        ("Run this code: print(2**10)", "tool"),
        ("Hi!", "chat"),
        ("Do you remember what I said?", "chat"),
    ],
)
def test_design_examples_are_classified(
    classifier: IntentClassifier, text: str, intent: str
) -> None:
    assert classifier.classify(text).intent == intent


def test_a_short_follow_up_takes_its_meaning_from_the_previous_turn(
    classifier: IntentClassifier,
) -> None:
    history = [("user", "What time is it in London?"), ("assistant", "It is 14:05 in London.")]
    follow_up = classifier.classify("and in Tokyo?", history)
    assert follow_up.intent == "tool" and follow_up.context_used

    thanks = classifier.classify("Thanks!", history)
    assert thanks.intent == "chat" and not thanks.context_used

    long_turn = "Write a short poem about the rain falling on the city at night"
    assert not classifier.classify(long_turn, history).context_used
