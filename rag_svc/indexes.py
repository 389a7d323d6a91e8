"""The two first-stage retrievers of a collection: FAISS (dense) and bm25s (sparse).

Both are immutable once built: a commit builds new ones (copying, extending),
so searches running on the previous snapshot are never disturbed. Row `i` of
either index is row `i` of the collection's chunk table.
"""

from __future__ import annotations

import logging
from pathlib import Path

import bm25s
import faiss
import numpy as np
import Stemmer

__all__ = ["DenseIndex", "SparseIndex", "bm25_tokens", "top_rows"]

logger = logging.getLogger("rag_svc.indexes")
_STEMMER = Stemmer.Stemmer("english")


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


class DenseIndex:
    """Inner product over unit vectors: exact (flat) when small, HNSW beyond a threshold."""

    def __init__(self, index: faiss.Index, vectors: np.ndarray, ef_search: int = 128) -> None:
        self.index = index
        self.vectors = vectors  # (N, D) float32, unit norm
        self.ef_search = ef_search

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self.index, faiss.IndexHNSWFlat) else "flat"

    @classmethod
    def build(
        cls, vectors: np.ndarray, *, hnsw_threshold: int, hnsw_m: int = 32, ef_search: int = 128
    ) -> DenseIndex:
        dim = vectors.shape[1]
        index: faiss.Index
        if vectors.shape[0] > hnsw_threshold:
            index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = max(80, 2 * hnsw_m)
        else:
            index = faiss.IndexFlatIP(dim)
        if vectors.shape[0]:
            index.add(vectors)
        return cls(index, vectors, ef_search)

    def extended(
        self, new_vectors: np.ndarray, *, hnsw_threshold: int, hnsw_m: int = 32
    ) -> DenseIndex:
        """A new index holding this one's vectors and then `new_vectors`."""
        vectors = np.concatenate([self.vectors, new_vectors]) if self.vectors.size else new_vectors
        crosses = self.kind == "flat" and vectors.shape[0] > hnsw_threshold
        if self.kind == "flat" or crosses:
            return DenseIndex.build(
                vectors, hnsw_threshold=hnsw_threshold, hnsw_m=hnsw_m, ef_search=self.ef_search
            )
        # HNSW grows in place on a copy: its graph is not rebuilt.
        index = faiss.clone_index(self.index)
        index.add(new_vectors)
        return DenseIndex(index, vectors, self.ef_search)

    def search(
        self, query: np.ndarray, n: int, mask: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        total = self.vectors.shape[0]
        if total == 0 or n <= 0:
            return []
        if mask is not None:
            # Filtered: exact scores over the allowed rows (a matrix-vector product).
            return top_rows(self.vectors @ query, n, mask)
        n = min(n, total)
        params = None
        if self.kind == "hnsw":
            # faiss's bundled stubs lack the HNSW search parameters the module has.
            params = faiss.SearchParametersHNSW(efSearch=max(self.ef_search, n))  # type: ignore[attr-defined]
        scores, rows = self.index.search(query[None, :].astype(np.float32), n, params=params)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    @classmethod
    def load(cls, path: Path, vectors: np.ndarray, ef_search: int = 128) -> DenseIndex:
        index = faiss.read_index(str(path))
        if index.ntotal != vectors.shape[0]:
            raise ValueError(f"{path} holds {index.ntotal} vectors, the store {vectors.shape[0]}")
        return cls(index, vectors, ef_search)


def bm25_tokens(texts: list[str]) -> list[list[str]]:
    """Lower-cased, stop-word-free, Snowball-stemmed words per text."""
    tokens = bm25s.tokenize(
        texts, stopwords="en", stemmer=_STEMMER, return_ids=False, show_progress=False
    )
    return [list(t) for t in tokens]


class SparseIndex:
    """BM25 (Lucene's variant, k1=1.5, b=0.75) over the chunks' stemmed words."""

    def __init__(self, retriever: bm25s.BM25 | None, size: int) -> None:
        self.retriever = retriever
        self.size = size

    @classmethod
    def build(cls, corpus_tokens: list[list[str]]) -> SparseIndex:
        if not any(corpus_tokens):
            return cls(None, len(corpus_tokens))
        retriever = bm25s.BM25()
        retriever.index(corpus_tokens, show_progress=False)
        return cls(retriever, len(corpus_tokens))

    def search(
        self, query_tokens: list[str], n: int, mask: np.ndarray | None = None
    ) -> list[tuple[int, float]]:
        if self.retriever is None or n <= 0:
            return []
        known = [t for t in query_tokens if t in self.retriever.vocab_dict and t]
        if not known:
            return []
        scores = self.retriever.get_scores(known)  # (N,)
        hits = top_rows(np.where(scores > 0, scores, -np.inf), n, mask)
        return hits

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        if self.retriever is not None:
            self.retriever.save(str(directory))

    @classmethod
    def load(cls, directory: Path, size: int) -> SparseIndex:
        if not (directory / "params.index.json").is_file():
            return cls(None, size)
        retriever = bm25s.BM25.load(str(directory))
        return cls(retriever, size)
