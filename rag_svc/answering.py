"""Answers with citations: retrieve, rerank, number the sources, generate, verify.

question --(self-RAG gate)--> no retrieval: answer directly
    |--(HyDE)------ hypothetical passage -> its embedding drives dense retrieval
    |--(multi-hop)- sub-questions -> one retrieval each, interleaved
    v
search every collection asked for (hybrid, RRF across collections, rerank)
    -> sources within the token budget, numbered [1]..[n]
    -> moe_svc answers, first, from short excerpts of them
    -> attribution: each sentence cited by the source that supports it,
       wrong markers corrected, unsupported sentences flagged or dropped
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from common.chat import ChatClient, Message
from common.contracts.rag import (
    AnswerRequest,
    AnswerResponse,
    AnswerSource,
    RetrievalTrace,
    SearchRequest,
    SearchResult,
)
from rag_svc.attribution import attribute
from rag_svc.federated import search_collections
from rag_svc.layout import CollectionRef
from rag_svc.library import Library
from rag_svc.prompts import (
    answer_messages,
    decompose_messages,
    direct_messages,
    extract_answer,
    hyde_messages,
    parse_sub_questions,
)
from rag_svc.self_rag import retrieval_not_needed
from rag_svc.settings import RagSettings

__all__ = ["Answerer", "assemble_sources", "interleave"]

logger = logging.getLogger("rag_svc.answer")

# A source cut to fit the budget keeps at least this many tokens, or is left out.
MIN_SOURCE_TOKENS = 24


def interleave(rankings: list[list[SearchResult]], limit: int) -> list[SearchResult]:
    """Round-robin over rankings (best first), each chunk once: every query gets a say."""
    out: list[SearchResult] = []
    seen: set[str] = set()
    for rank in range(max((len(r) for r in rankings), default=0)):
        for ranking in rankings:
            if rank < len(ranking) and ranking[rank].chunk_id not in seen:
                seen.add(ranking[rank].chunk_id)
                out.append(ranking[rank])
                if len(out) == limit:
                    return out
    return out


def assemble_sources(
    results: list[SearchResult],
    budget_tokens: int,
    count_tokens: Callable[[list[str]], list[int]],
) -> list[AnswerSource]:
    """Number results [1]..[n] in rank order while their tokens fit the budget."""
    counts = count_tokens([r.text for r in results])
    sources: list[AnswerSource] = []
    left = budget_tokens
    for result, tokens in zip(results, counts, strict=True):
        text = result.text
        title = result.metadata.get("title")
        if tokens > left:
            if left < MIN_SOURCE_TOKENS:
                break
            # Keep the head of the chunk, in whole words, at about the tokens left.
            words = text.split()
            text = " ".join(words[: max(1, int(len(words) * left / tokens))]) + " ..."
            tokens = left
        sources.append(
            AnswerSource(
                number=len(sources) + 1,
                doc_id=result.doc_id,
                chunk_id=result.chunk_id,
                text=text,
                score=result.score,
                metadata=result.metadata,
                collection=result.collection,
                title=title if isinstance(title, str) and title.strip() else None,
            )
        )
        left -= tokens
    return sources


class Answerer:
    def __init__(self, library: Library, chat: ChatClient, settings: RagSettings) -> None:
        self.library = library
        self.chat = chat
        self.settings = settings

    async def _say(
        self, messages: list[Message], *, max_tokens: int, temperature: float
    ) -> tuple[str, bool]:
        """moe_svc's text, and whether max_tokens cut it."""
        completion = await self.chat.complete(
            messages, max_tokens=max_tokens, temperature=temperature
        )
        return completion.text.strip(), completion.finish_reason == "length"

    async def answer(self, refs: list[CollectionRef], request: AnswerRequest) -> AnswerResponse:
        """Answer `request.question` from the collections `refs`, citing the sources it used.

        Step by step:

        1. with `self_rag`, a question that needs no documents (small talk, one
           about the assistant) or one nothing in the collection resembles is
           answered by moe_svc directly (`retrieval.used: false`, and why); so is
           a question when `refs` is empty;
        2. with `hyde`, moe_svc writes a hypothetical answer passage whose
           embedding searches alongside the question's; with `multi_hop`, it
           splits the question into sub-questions, each searched as well;
        3. every query searches the collections (`k`, `mode`, `rerank`, `filter`;
           several collections fused into one ranking, `rag_svc.federated`)
           concurrently, and the rankings are interleaved;
        4. with `self_rag` and `rerank`, sources the reranker judges irrelevant
           are dropped; if none is left, the answer is direct as in 1;
        5. the sources are numbered within `context_max_tokens`, moe_svc writes
           the answer from excerpts of them, answer first;
        6. attribution (`rag_svc.attribution`) cites each sentence by the source
           that supports it, corrects or removes wrong markers, and flags or drops
           unsupported sentences (`unsupported`); `verified` when every sentence is.

        `refs` are collections the caller may read (`rag_svc.access`). Raises
        `NotFound` for a collection that does not exist, `ServiceUnavailable`
        while the models load, and moe_svc's errors (`ServiceError`) as they come.
        """
        library, s = self.library, self.settings
        collections = [library.collection(ref) for ref in refs]
        models = library.require_models()
        question = request.question.strip()
        max_tokens = request.max_tokens or s.answer_max_tokens
        names = ", ".join(repr(ref.name) for ref in refs)

        if not refs:
            return await self._answer_directly(
                question, "the caller may read no collection", request, max_tokens
            )
        if request.self_rag:
            reason = retrieval_not_needed(question)
            if reason is None:
                best = max(
                    await asyncio.gather(
                        *(
                            asyncio.to_thread(models.retriever.best_similarity, c, question)
                            for c in collections
                        )
                    )
                )
                if best < s.self_rag_min_similarity:
                    reason = f"nothing in {names} resembles the question (best cosine {best:.2f})"
            if reason is not None:
                return await self._answer_directly(question, reason, request, max_tokens)

        trace = RetrievalTrace(used=True, queries=[question])
        if request.hyde:
            trace.hyde_passage, _ = await self._say(
                hyde_messages(question), max_tokens=160, temperature=request.temperature
            )
        if request.multi_hop:
            reply, _ = await self._say(
                decompose_messages(question, s.multi_hop_max_subquestions),
                max_tokens=160,
                temperature=request.temperature,
            )
            trace.sub_questions = parse_sub_questions(reply, question, s.multi_hop_max_subquestions)
            trace.queries += trace.sub_questions

        rankings = await asyncio.gather(
            *(
                asyncio.to_thread(
                    search_collections,
                    library,
                    refs,
                    SearchRequest(
                        query=query,
                        k=request.k,
                        mode=request.mode,
                        rerank=request.rerank,
                        filter=request.filter,
                    ),
                    trace.hyde_passage if query == question else None,
                )
                for query in trace.queries
            )
        )
        results = interleave(list(rankings), max(request.k, len(trace.queries)))
        if request.self_rag and request.rerank:
            relevant = [
                r for r in results if r.scores.get("rerank", 1.0) >= s.self_rag_min_relevance
            ]
            if not relevant:
                reason = "the reranker judged every retrieved source irrelevant"
                return await self._answer_directly(question, reason, request, max_tokens, trace)
            if len(relevant) < len(results):
                trace.reason = f"dropped {len(results) - len(relevant)} irrelevant source(s)"
            results = relevant

        sources = assemble_sources(results, s.context_max_tokens, models.embedder.count_tokens)
        written, cut = await self._say(
            answer_messages(question, sources),
            max_tokens=max_tokens,
            temperature=request.temperature,
        )
        answer = extract_answer(written)
        attributed = await asyncio.to_thread(
            attribute,
            answer,
            question,
            sources,
            models.reranker,
            models.embedder.encode,
            threshold=s.attribution_threshold,
            policy=request.unsupported or s.unsupported_sentences,
            lexical_threshold=s.support_lexical_threshold,
            embedding_threshold=s.support_embedding_threshold,
            cut=cut,
        )
        logger.info(
            "answered",
            extra={
                "collections": [ref.name for ref in refs],
                "sources": len(sources),
                "citations": len(attributed.citations),
                "unsupported": sum(not c.supported for c in attributed.attribution.sentences),
                "verified": attributed.verified,
                "hyde": request.hyde,
                "multi_hop": request.multi_hop,
            },
        )
        return AnswerResponse(
            answer=attributed.answer,
            citations=attributed.citations,
            verified=attributed.verified,
            sources=sources,
            retrieval=trace,
            model=await self.chat.resolve(),
            attribution=attributed.attribution,
            finish_reason="length" if cut else "stop",
        )

    async def _answer_directly(
        self,
        question: str,
        reason: str,
        request: AnswerRequest,
        max_tokens: int,
        trace: RetrievalTrace | None = None,
    ) -> AnswerResponse:
        answer, cut = await self._say(
            direct_messages(question), max_tokens=max_tokens, temperature=request.temperature
        )
        trace = trace or RetrievalTrace(used=False)
        trace.used = False
        trace.reason = reason
        return AnswerResponse(
            answer=answer,
            citations=[],
            verified=False,
            sources=[],
            retrieval=trace,
            model=await self.chat.resolve(),
            finish_reason="length" if cut else "stop",
        )
