"""MinHash near-duplicate detection and its LSH bands."""

from __future__ import annotations

import random

import numpy as np
import pytest

from rag_svc.dedup import MinHasher, SignatureBands, best_match, rows_per_band

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


@pytest.mark.parametrize(("threshold", "rows"), [(0.9, 8), (0.95, 12), (0.5, 2), (0.06, 1)])
def test_bands_are_as_narrow_as_the_threshold_allows(threshold: float, rows: int) -> None:
    assert rows_per_band(128, threshold) == rows
    bands = 128 // rows
    assert (1 - threshold**rows) ** bands <= 1e-3  # a pair at the threshold is rarely missed


def test_below_what_bands_can_promise_every_row_is_a_candidate() -> None:
    hasher = MinHasher()
    bands = SignatureBands(hasher.permutations, 0.01)
    bands.add(np.stack([hasher.signature(text(seed)) for seed in range(5)]))
    assert bands.rows == 0
    assert bands.candidates(hasher.signature(text(99)), 4).tolist() == [0, 1, 2, 3]


def test_a_near_duplicate_is_a_candidate_and_unrelated_texts_are_not() -> None:
    hasher = MinHasher()
    stored = [hasher.signature(text(seed)) for seed in range(200)]
    bands = SignatureBands(hasher.permutations, 0.9)
    bands.add(np.stack(stored))
    original = text(57)
    edited = original.replace(original.split()[150], "CHANGED", 1)

    assert bands.candidates(hasher.signature(edited), 200).tolist() == [57]
    assert bands.candidates(hasher.signature(text(1000)), 200).tolist() == []
    # A snapshot that holds fewer rows sees none beyond them.
    assert bands.candidates(hasher.signature(edited), 57).tolist() == []
