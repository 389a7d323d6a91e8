"""Near-duplicate documents by MinHash over word shingles.

The share of equal signature slots estimates the Jaccard similarity of two
documents' shingle sets (Broder 1997). A new document is compared only with
the stored ones that agree with it on a whole band of slots (locality-
sensitive hashing, Leskovec, Rajaraman and Ullman, Mining of Massive
Datasets, ch. 3.4): a lookup costs the same at 1k or 20k documents, where a
scan of every signature grew with the collection (2.3 ms per document at 20k).
"""

from __future__ import annotations

import re
import zlib

import numpy as np

__all__ = ["MinHasher", "SignatureBands", "best_match", "rows_per_band"]

_PRIME = np.uint64((1 << 61) - 1)
# The chance that a pair exactly at the duplicate threshold shares no band, at most.
MAX_MISS = 1e-3
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


def rows_per_band(size: int, threshold: float, max_miss: float = MAX_MISS) -> int:
    """Slots per band: the most (the fewest unrelated candidates) with which a pair of
    similarity `threshold` shares no band with probability at most `max_miss`.

    A pair of similarity s agrees on a band of r slots with probability s**r, so
    it shares none of the size // r bands with probability (1 - s**r) ** (size // r).
    128 slots at 0.9: 8 slots in 16 bands (a pair at 0.9 is missed 1.2e-4 of the
    time, at 0.95 1e-10; a pair at 0.5 becomes a candidate 6% of the time).
    0 when even single-slot bands miss more often (a threshold under ~0.05): then
    every row is a candidate.
    """
    for rows in range(size, 0, -1):
        if (1.0 - threshold**rows) ** (size // rows) <= max_miss:
            return rows
    return 0


class SignatureBands:
    """Which signature rows agree with a signature on a whole band: the candidates.

    Rows are only appended, as in the signature table; a snapshot asks for the
    rows below its own count, so one instance serves every snapshot of a
    collection. Appends happen under the collection's write lock; readers need
    none (a dict lookup and a list copy are atomic under the GIL).
    """

    def __init__(self, size: int, threshold: float) -> None:
        self.rows = rows_per_band(size, threshold)
        self.bands = size // self.rows if self.rows else 0
        self._tables: list[dict[bytes, list[int]]] = [{} for _ in range(self.bands)]
        self.count = 0  # rows added

    def _keys(self, signature: np.ndarray) -> list[bytes]:
        r = self.rows
        return [signature[i * r : (i + 1) * r].tobytes() for i in range(self.bands)]

    def add(self, signatures: np.ndarray) -> None:
        """Append `signatures` ((N, size) uint32) as the next rows."""
        if not self.rows:
            self.count += len(signatures)
            return
        for signature in signatures:
            for table, key in zip(self._tables, self._keys(signature), strict=True):
                table.setdefault(key, []).append(self.count)
            self.count += 1

    def candidates(self, signature: np.ndarray, count: int) -> np.ndarray:
        """Rows below `count` that share at least one band with `signature`, ascending."""
        if not self.rows:
            return np.arange(min(count, self.count), dtype=np.int64)
        found: set[int] = set()
        for table, key in zip(self._tables, self._keys(signature), strict=True):
            found.update(table.get(key, ()))
        return np.array(sorted(r for r in found if r < count), dtype=np.int64)
