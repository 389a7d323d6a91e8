"""MinHash near-duplicate detection."""

from __future__ import annotations

import random

import numpy as np

from rag_svc.dedup import MinHasher, best_match

WORDS = ["river", "stone", "bridge", "market", "harbour", "castle", "forest", "meadow"]


def text(seed: int, n: int = 300) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) + str(rng.randint(0, 50)) for _ in range(n))


def test_near_duplicates_score_high_and_distinct_texts_low() -> None:
    hasher = MinHasher()
    original = text(1)
    edited = original.replace(original.split()[150], "CHANGED", 1)

    same = hasher.signature(original)
    assert best_match(same, same[None, :]) == (0, 1.0)
    _, near = best_match(hasher.signature(edited), same[None, :])
    _, far = best_match(hasher.signature(text(2)), same[None, :])
    assert near >= 0.9
    assert far < 0.1


def test_case_and_spacing_do_not_matter() -> None:
    hasher = MinHasher()
    a = hasher.signature("The Quick brown fox jumps over the lazy dog today")
    b = hasher.signature("the quick   brown FOX jumps over the lazy dog today.")
    assert (a == b).all()


def test_best_match_picks_the_closest_row() -> None:
    hasher = MinHasher()
    stored = [hasher.signature(text(seed)) for seed in (10, 11, 12)]
    row, similarity = best_match(hasher.signature(text(11)), np.stack(stored))
    assert (row, similarity) == (1, 1.0)
    assert best_match(stored[0], np.zeros((0, hasher.permutations), np.uint32)) == (-1, 0.0)
