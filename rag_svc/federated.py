"""Search over several collections: each searched alone, one ranking by RRF, then reranked.

    query -> collection A (hybrid, no rerank) --+
    query -> collection B (hybrid, no rerank) --+-- RRF -> top max(k, R) -> cross-encoder -> top k

One collection is searched exactly as its own route searches it. Which
collections a caller may name, or reads by default (its own and the shared
ones), `rag_svc.access` decides.
"""

from __future__ import annotations

from common.caller import Caller
from common.contracts.rag import MAX_K, SearchRequest, SearchResult
from rag_svc import access
from rag_svc.layout import CollectionRef
from rag_svc.library import Library
from rag_svc.retrieval import reciprocal_rank_fusion

__all__ = ["readable_collections", "search_collections"]


def readable_collections(
    library: Library, caller: Caller, names: list[str] | None
) -> list[CollectionRef]:
    """The collections `names` mean to the caller (404 for one it cannot read); None: all."""
    if names is not None:
        return [access.readable(library, caller, name) for name in names]
    refs = []
    for info in access.list_collections(library, caller):
        ref = library.find(caller.tenant, info["name"])
        if ref is not None:
            refs.append(ref)
    return refs


def _passage(result: SearchResult) -> str:
    # As the collection indexed it: the title on its own line, then the text.
    title = result.metadata.get("title")
    return f"{title}\n{result.text}" if isinstance(title, str) and title.strip() else result.text


def search_collections(
    library: Library,
    refs: list[CollectionRef],
    request: SearchRequest,
    dense_text: str | None = None,
) -> list[SearchResult]:
    """The top `request.k` chunks of all `refs`, each naming its collection."""
    if len(refs) == 1:
        [ref] = refs
        results = library.search(ref, request, dense_text).results
        return [r.model_copy(update={"collection": ref.name}) for r in results]
    models = library.require_models()
    options = models.retriever.options
    pool = max(request.k, options.rerank_candidates) if request.rerank else request.k
    each = request.model_copy(update={"k": min(pool, MAX_K), "rerank": False})
    found: dict[tuple[CollectionRef, str], SearchResult] = {}
    rankings = []
    for ref in refs:
        results = library.search(ref, each, dense_text).results
        rankings.append([(ref, r.chunk_id) for r in results])
        for r in results:
            found[(ref, r.chunk_id)] = r.model_copy(update={"collection": ref.name})
    fused = reciprocal_rank_fusion(rankings, options.rrf_k)[:pool]
    ranked = [(found[key], score) for key, score in fused]
    for result, score in ranked:
        result.scores["fused_rrf"] = round(score, 6)
    if request.rerank and ranked:
        probabilities = models.reranker.score(request.query, [_passage(r) for r, _ in ranked])
        for (result, _), p in zip(ranked, probabilities, strict=True):
            result.scores["rerank"] = round(float(p), 6)
        # Ties (rare) keep the fused order: the sort is stable.
        ranked = sorted(
            ((r, float(p)) for (r, _), p in zip(ranked, probabilities, strict=True)),
            key=lambda item: -item[1],
        )
    return [r.model_copy(update={"score": round(s, 6)}) for r, s in ranked[: request.k]]
