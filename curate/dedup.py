"""Exact duplicates by a hash of the normalised text; near-duplicates by MinHash LSH.

The first record of a group is kept and later ones are removed, naming the record
they repeat. Exact: the text after Unicode NFKC, case folding and whitespace
collapsing, hashed with BLAKE2b (16 bytes a record). Near: word `shingle`-grams,
MinHash signatures with `num_perm` permutations (Broder 1997) and datasketch's
LSH index, which finds records whose estimated Jaccard similarity passes
`threshold` without comparing every pair (Leskovec, Rajaraman & Ullman, Mining of
Massive Datasets, ch. 3). The hash set and the LSH index are the stage's only
state that grows with the input.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from datasketch import MinHash, MinHashLSH  # type: ignore[import-untyped]

from curate.pipeline import KEEP, Decision
from curate.records import Record

__all__ = ["ExactDuplicates", "NearDuplicates", "NearSettings", "normalise"]

_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")


def normalise(text: str) -> str:
    """The text as the exact-duplicate stage compares it: NFKC, case folded, one space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


class ExactDuplicates:
    name = "exact_dedup"

    def __init__(self) -> None:
        self._first: dict[bytes, str] = {}

    def __call__(self, record: Record) -> Decision:
        digest = hashlib.blake2b(normalise(record.text).encode(), digest_size=16).digest()
        first = self._first.setdefault(digest, record.id)
        if first != record.id:
            return Decision("remove", f"same text as {first}")
        return KEEP


@dataclass(frozen=True)
class NearSettings:
    # Estimated Jaccard similarity of two records' shingle sets at which the later
    # one is a near-duplicate: 0.7 catches a copied article with a changed footer,
    # a dropped paragraph or a few edited words (see curate/README.md for figures).
    threshold: float = 0.7
    # MinHash permutations: more estimate the similarity better and cost more time.
    num_perm: int = 128
    # Words per shingle: 5-word shingles make shared phrases, not shared words, count.
    shingle: int = 5
    seed: int = 1


class NearDuplicates:
    name = "near_dedup"

    def __init__(self, settings: NearSettings | None = None) -> None:
        self.settings = settings or NearSettings()
        self._lsh = MinHashLSH(threshold=self.settings.threshold, num_perm=self.settings.num_perm)
        # One MinHash to copy: the permutations are drawn once from the seed.
        self._template = MinHash(num_perm=self.settings.num_perm, seed=self.settings.seed)

    def shingles(self, text: str) -> set[str]:
        """The text's word `shingle`-grams, case folded (the whole text if shorter)."""
        words = [w.casefold() for w in _WORD.findall(text)]
        n = self.settings.shingle
        return {" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))}

    def signature(self, text: str) -> MinHash:
        minhash = self._template.copy()
        minhash.update_batch([s.encode() for s in self.shingles(text)])
        return minhash

    def __call__(self, record: Record) -> Decision:
        minhash = self.signature(record.text)
        candidates = self._lsh.query(minhash)
        if candidates:
            return Decision("remove", f"near-duplicate of {min(candidates)}")
        self._lsh.insert(record.id, minhash)
        return KEEP
