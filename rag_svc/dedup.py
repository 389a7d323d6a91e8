"""Near-duplicate documents by MinHash over word shingles.

The share of equal signature slots estimates the Jaccard similarity of two
documents' shingle sets (Broder 1997). Signatures are compared in bulk with
numpy: a few thousand documents take well under a millisecond per lookup.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

__all__ = ["MinHasher", "best_match"]

_PRIME = np.uint64((1 << 61) - 1)
_WORD = re.compile(r"\w+")


class MinHasher:
    """MinHash signatures with `permutations` slots over `shingle`-word shingles."""

    def __init__(self, permutations: int = 128, shingle: int = 5, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.permutations = permutations
        self.shingle = shingle
        # Universal hashing (a*x + b) mod p with p a Mersenne prime; 32-bit inputs keep
        # a*x below 2**64 so the uint64 arithmetic does not wrap.
        self._a = rng.integers(1, 1 << 31, size=permutations, dtype=np.uint64)
        self._b = rng.integers(0, 1 << 31, size=permutations, dtype=np.uint64)

    def shingles(self, text: str) -> np.ndarray:
        words = [w.lower() for w in _WORD.findall(text)]
        n = self.shingle
        grams = (
            [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
            if len(words) >= n
            else [" ".join(words)]
        )
        return np.fromiter((zlib.crc32(g.encode()) for g in set(grams)), dtype=np.uint64)

    def signature(self, text: str) -> np.ndarray:
        """(permutations,) uint32: the minimum hash of the shingles under each permutation."""
        hashes = self.shingles(text)  # (S,)
        if hashes.size == 0:
            return np.full(self.permutations, np.iinfo(np.uint32).max, dtype=np.uint32)
        permuted = (hashes[:, None] * self._a[None, :] + self._b[None, :]) % _PRIME  # (S, P)
        signature: np.ndarray = (permuted.min(axis=0) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        return signature


def best_match(signature: np.ndarray, signatures: np.ndarray) -> tuple[int, float]:
    """Index and estimated Jaccard of the most similar row of `signatures` (-1, 0.0 if none)."""
    if signatures.shape[0] == 0:
        return -1, 0.0
    similarity = (signatures == signature[None, :]).mean(axis=1)  # (N,)
    best = int(similarity.argmax())
    return best, float(similarity[best])
