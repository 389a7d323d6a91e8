"""The two first-stage retrievers of a collection: exact dense search and BM25, both append-only.

Rows only ever get appended: row `i` of either index is row `i` of the
collection's chunk table, and a deleted chunk keeps its row (the snapshot's
`alive` mask hides it) until the collection is compacted on the next load.
Appending costs what the new rows cost, whatever the collection's size.

A snapshot holds an index together with its row count: a reader sees rows
`[0, size)` only, so a commit that appends meanwhile never disturbs it. Only
the newest index (the one whose size is the buffer's fill) appends in place;
appending to an older one copies, so no row a reader can see is overwritten.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import bm25s
import faiss
import numpy as np
import Stemmer

__all__ = ["DenseIndex", "GrowableRows", "SparseIndex", "bm25_tokens", "top_rows"]

_STEMMER = Stemmer.Stemmer("english")
# BM25 as Lucene scores it (bm25s's default "lucene" method).
BM25_K1 = 1.5
BM25_B = 0.75
# Posting parts a term keeps before they are joined into one array.
MAX_POSTING_PARTS = 8


def top_rows(scores: np.ndarray, n: int, mask: np.ndarray | None) -> list[tuple[int, float]]:
    """The `n` best (row, score) pairs, best first, among rows `mask` allows."""
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    n = min(n, int(np.isfinite(scores).sum()))
    if n <= 0:
        return []
    best = np.argpartition(-scores, n - 1)[:n]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best]


class GrowableRows:
    """A row buffer that doubles its capacity: appends are amortised O(new rows)."""

    def __init__(self, width: int, dtype: type | np.dtype, rows: np.ndarray | None = None) -> None:
        self.width = width
        self.dtype = np.dtype(dtype)
        initial = rows if rows is not None else np.zeros((0, width), self.dtype)
        self.array = np.zeros((max(16, initial.shape[0]), width), self.dtype)
        self.array[: initial.shape[0]] = initial
        self.fill = initial.shape[0]

    def view(self, size: int) -> np.ndarray:
        return self.array[:size]

    def appended(self, size: int, rows: np.ndarray) -> GrowableRows:
        """Rows `[0, size)` then `rows`: in place when `size` is the fill, else on a copy."""
        if size != self.fill:
            return GrowableRows(self.width, self.dtype, np.concatenate([self.array[:size], rows]))
        needed = size + rows.shape[0]
        if needed > self.array.shape[0]:
            grown = np.zeros((max(needed, 2 * self.array.shape[0]), self.width), self.dtype)
            grown[:size] = self.array[:size]
            # Readers holding the old array keep reading it; it is never written again.
            self.array = grown
        self.array[size:needed] = rows
        self.fill = needed
        return self


@dataclass(frozen=True)
class DenseIndex:
    """Inner product over unit vectors: exact when small, plus an HNSW graph beyond a threshold.

    The exact side is a matrix-vector product over the snapshot's rows. The
    HNSW graph (when the collection outgrows `hnsw_threshold`) grows in place
    under a lock shared by every snapshot of the collection; hits it returns
    beyond a snapshot's size are dropped.
    """

    rows: GrowableRows
    size: int
    hnsw: faiss.IndexHNSWFlat | None = None
    hnsw_lock: threading.Lock = field(default_factory=threading.Lock, compare=False)
    ef_search: int = 128

    @property
    def vectors(self) -> np.ndarray:
        return self.rows.view(self.size)  # (size, D) float32, unit norm

    @property
    def kind(self) -> str:
        return "hnsw" if self.hnsw is not None else "flat"

    @classmethod
    def empty(cls, dimensions: int, ef_search: int = 128) -> DenseIndex:
        return cls(GrowableRows(dimensions, np.float32), 0, ef_search=ef_search)

    def appended(self, new_vectors: np.ndarray, *, hnsw_threshold: int, hnsw_m: int) -> DenseIndex:
        """This index's rows, then `new_vectors`; the HNSW graph is made once, then grows."""
        rows = self.rows.appended(self.size, new_vectors.astype(np.float32, copy=False))
        size = self.size + new_vectors.shape[0]
        hnsw = self.hnsw
        if rows is not self.rows:
            hnsw = None  # an older snapshot forked: its graph would hold rows it does not
        with self.hnsw_lock:
            if hnsw is not None:
                hnsw.add(new_vectors)
            elif size > hnsw_threshold:
                hnsw = faiss.IndexHNSWFlat(rows.width, hnsw_m, faiss.METRIC_INNER_PRODUCT)
                hnsw.hnsw.efConstruction = max(80, 2 * hnsw_m)
                hnsw.add(rows.view(size))
        return DenseIndex(rows, size, hnsw, self.hnsw_lock, self.ef_search)

    def search(
        self, query: np.ndarray, n: int, mask: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """The `n` nearest rows among those `mask` allows (None: every row)."""
        if self.size == 0 or n <= 0:
            return []
        if self.hnsw is None:
            return top_rows(self.vectors @ query, n, mask)
        # Ask for some extra hits: rows the mask hides or rows appended after this snapshot.
        want = min(self.hnsw.ntotal, 2 * n + 16)
        # faiss's bundled stubs lack the HNSW search parameters the module has.
        params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, want))  # type: ignore[attr-defined]
        with self.hnsw_lock:
            scores, rows = self.hnsw.search(query[None, :].astype(np.float32), want, params=params)
        hits = [
            (int(r), float(s))
            for r, s in zip(rows[0], scores[0], strict=True)
            if 0 <= r < self.size and (mask is None or mask[r])
        ]
        if len(hits) < n and mask is not None:
            # A selective mask: exact scores over the rows it allows.
            return top_rows(self.vectors @ query, n, mask)
        return hits[:n]


def bm25_tokens(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stop-word-free, Snowball-stemmed words per text."""
    tokens = bm25s.tokenize(
        texts, stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )
    return [list(t) for t in tokens]


class _Postings:
    """One term's (row, term frequency) pairs in row order, in a few appended parts."""

    def __init__(self) -> None:
        self.parts: tuple[tuple[np.ndarray, np.ndarray], ...] = ()

    def append(self, rows: np.ndarray, tfs: np.ndarray) -> None:
        parts = (*self.parts, (rows, tfs))
        if len(parts) > MAX_POSTING_PARTS:
            parts = (
                (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])),
            )
        self.parts = parts  # one assignment: a reader sees the old parts or the new

    def below(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        parts = self.parts
        if len(parts) == 1:
            rows, tfs = parts[0]
        else:
            rows = np.concatenate([p[0] for p in parts])
            tfs = np.concatenate([p[1] for p in parts])
        cut = int(np.searchsorted(rows, size))
        return rows[:cut], tfs[:cut]


@dataclass(frozen=True)
class SparseIndex:
    """BM25 (Lucene's variant, k1=1.5, b=0.75) over an inverted index that grows in place.

    Statistics (document count, average length, document frequencies) are
    those of the snapshot's live rows, computed at query time, so appends and
    deletions never rewrite what is stored.
    """

    postings: dict[str, _Postings]
    lengths: GrowableRows  # (rows, 1) float32: words per chunk
    size: int

    @classmethod
    def empty(cls) -> SparseIndex:
        return cls({}, GrowableRows(1, np.float32), 0)

    def appended(self, corpus_tokens: list[list[str]]) -> SparseIndex:
        """This index's rows, then one row per token list (only the newest index appends)."""
        if self.lengths.fill != self.size:
            raise ValueError("an inverted index grows from its newest snapshot only")
        # (term, row) pairs counted in bulk: one dict lookup per token, then numpy.
        terms: dict[str, int] = {}
        term_ids = np.fromiter(
            (terms.setdefault(t, len(terms)) for tokens in corpus_tokens for t in tokens),
            np.int64,
        )
        stop = self.size + len(corpus_tokens)
        rows = np.repeat(np.arange(self.size, stop), [len(t) for t in corpus_tokens])
        pairs, tfs = np.unique(term_ids * stop + rows, return_counts=True)
        if pairs.size:
            pair_terms, pair_rows = np.divmod(pairs, stop)
            # Sorted by term, then row: each term's postings are one contiguous run.
            bounds = np.flatnonzero(np.diff(pair_terms)) + 1
            names = list(terms)
            for term_rows, term_tfs, term in zip(
                np.split(pair_rows, bounds),
                np.split(tfs.astype(np.float32), bounds),
                pair_terms[np.r_[0, bounds]],
                strict=True,
            ):
                postings = self.postings.get(names[term])
                if postings is None:
                    postings = self.postings[names[term]] = _Postings()
                postings.append(term_rows, term_tfs)
        lengths = np.array([[len(t)] for t in corpus_tokens], np.float32).reshape(-1, 1)
        return SparseIndex(
            self.postings, self.lengths.appended(self.size, lengths), self.size + len(corpus_tokens)
        )

    def search(
        self, query_tokens: list[str], n: int, alive: np.ndarray, mask: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        """Top `n` rows by BM25 among live rows (`alive`) that `mask` allows."""
        if n <= 0 or self.size == 0:
            return []
        lengths = self.lengths.view(self.size)[:, 0]
        live = int(alive.sum())
        if live == 0:
            return []
        average = float(lengths[alive].mean()) or 1.0
        scores = np.zeros(self.size, np.float32)
        matched = False
        for term in dict.fromkeys(t for t in query_tokens if t):
            postings = self.postings.get(term)
            if postings is None:
                continue
            rows, tfs = postings.below(self.size)
            keep = alive[rows]
            rows, tfs = rows[keep], tfs[keep]
            if rows.size == 0:
                continue
            matched = True
            idf = math.log(1.0 + (live - rows.size + 0.5) / (rows.size + 0.5))
            norm = BM25_K1 * (1.0 - BM25_B + BM25_B * lengths[rows] / average)
            scores[rows] += idf * tfs / (tfs + norm)
        if not matched:
            return []
        return top_rows(np.where(scores > 0, scores, -np.inf), n, mask)
