"""Search: dense and/or BM25 candidates, reciprocal rank fusion, cross-encoder rerank.

    query -> dense top-N  --+
                            +-- RRF --> one chunk per document --> top max(k, R)
    query -> BM25 top-N   --+        --> cross-encoder on each document's passage --> top k

With `rerank` the candidates are first folded to one per document (its best
chunk), so the cross-encoder's `R` slots (`rerank_candidates`, at least k) go
to `R` different documents; each is scored on a passage that starts at its best
chunk and runs on through the document for up to `rerank_passage_chars`
characters (chunks are shorter than the cross-encoder's window, and the words
around a chunk are evidence too). The result's `score` is then the
probability; without `rerank`, results are chunks scored by the first stage
(cosine, BM25 or RRF).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from common.contracts.rag import SearchMode, SearchResult
from common.minilm import MiniLMEmbedder
from rag_svc.filters import compile_filter
from rag_svc.indexes import bm25_tokens
from rag_svc.reranker import Reranker
from rag_svc.storage import CollectionStore, SearchView

__all__ = ["Retriever", "SearchOptions", "reciprocal_rank_fusion"]

K = TypeVar("K", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[K]], k: int = 60) -> list[tuple[K, float]]:
    """Fuse rankings (best first) by sum of 1 / (k + rank) (Cormack et al. 2009)."""
    fused: dict[K, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + 1.0 / (k + rank)
    return sorted(fused.items(), key=lambda item: -item[1])


@dataclass(frozen=True)
class SearchOptions:
    fusion_candidates: int = 50
    rrf_k: int = 60
    rerank_candidates: int = 20
    # Characters of the document, from the best chunk on, the cross-encoder reads (0: the chunk).
    rerank_passage_chars: int = 2000


class Retriever:
    def __init__(
        self, embedder: MiniLMEmbedder, reranker: Reranker, options: SearchOptions
    ) -> None:
        self.embedder = embedder
        self.reranker = reranker
        self.options = options

    def search(
        self,
        collection: CollectionStore,
        query: str,
        *,
        k: int,
        mode: SearchMode = "hybrid",
        rerank: bool = True,
        filter: dict[str, Any] | None = None,
        dense_text: str | None = None,
    ) -> list[SearchResult]:
        """Top `k` chunks for `query`; `dense_text` replaces it for the dense side (HyDE)."""
        snapshot = collection.view()
        if snapshot.row_count == 0:
            return []
        mask = snapshot.mask(self._mask(snapshot, filter))
        if not mask.any():
            return []
        pool = max(k, self.options.rerank_candidates) if rerank else k
        stage: dict[int, dict[str, float]] = {}
        rankings: list[list[int]] = []
        # Reranking folds chunks into documents: it needs more chunks than it keeps.
        deep = mode == "hybrid" or rerank
        depth = max(pool, self.options.fusion_candidates) if deep else pool
        if mode in ("dense", "hybrid"):
            vector = self.embedder.encode([dense_text or query])[0]
            hits = snapshot.dense_search(vector, depth, mask)
            rankings.append([row for row, _ in hits])
            for row, score in hits:
                stage.setdefault(row, {})["dense"] = score
        if mode in ("bm25", "hybrid"):
            hits = snapshot.keyword_search(bm25_tokens([query])[0], depth, mask)
            rankings.append([row for row, _ in hits])
            for row, score in hits:
                stage.setdefault(row, {})["bm25"] = score
        if mode == "hybrid":
            candidates = reciprocal_rank_fusion(rankings, self.options.rrf_k)
            for row, score in candidates:
                stage[row]["rrf"] = score
        else:
            key = "dense" if mode == "dense" else "bm25"
            candidates = [(row, stage[row][key]) for row in rankings[0]]
        ranked = candidates[:pool]
        if rerank and ranked:
            best_chunk: dict[str, int] = {}
            for row, _ in candidates:
                best_chunk.setdefault(snapshot.chunk(row).doc_id, row)
            rows = list(best_chunk.values())[:pool]
            probabilities = self.reranker.score(
                query, [self._passage(snapshot, row) for row in rows]
            )
            for row, p in zip(rows, probabilities, strict=True):
                stage[row]["rerank"] = float(p)
            # Ties (rare) keep the first stage's order: the sort is stable.
            ranked = sorted(
                ((row, float(p)) for row, p in zip(rows, probabilities, strict=True)),
                key=lambda item: -item[1],
            )
        return [self._result(snapshot, row, score, stage[row]) for row, score in ranked[:k]]

    def best_similarity(self, collection: CollectionStore, query: str) -> float:
        """The highest cosine between `query` and any chunk (-1 for an empty collection)."""
        snapshot = collection.view()
        hits = snapshot.dense_search(self.embedder.encode([query])[0], 1, snapshot.mask(None))
        return hits[0][1] if hits else -1.0

    def _passage(self, snapshot: SearchView, row: int) -> str:
        """What the cross-encoder reads for a chunk's document: the chunk and what follows it."""
        chunk = snapshot.chunk(row)
        start = chunk.metadata.get("char_start")
        document = snapshot.document(chunk.doc_id)
        budget = self.options.rerank_passage_chars
        if not budget or not isinstance(start, int) or document is None:
            return chunk.index_text
        header = chunk.index_text[: len(chunk.index_text) - len(chunk.text)]
        end = max(start + budget, int(chunk.metadata.get("char_end", start)))
        return header + document.text[start:end]

    @staticmethod
    def _mask(snapshot: SearchView, spec: dict[str, Any] | None) -> np.ndarray | None:
        predicate = compile_filter(spec)
        if predicate is None:
            return None
        return np.fromiter(
            (predicate(snapshot.chunk(row).metadata) for row in range(snapshot.row_count)),
            dtype=bool,
            count=snapshot.row_count,
        )

    @staticmethod
    def _result(
        snapshot: SearchView, row: int, score: float, scores: dict[str, float]
    ) -> SearchResult:
        chunk = snapshot.chunk(row)
        return SearchResult(
            doc_id=chunk.doc_id,
            chunk_id=chunk.chunk_id,
            text=chunk.text,
            score=round(score, 6),
            metadata=chunk.metadata,
            scores={name: round(value, 6) for name, value in scores.items()},
        )
