"""The parts of memory_svc, built once at start-up and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from memory_svc.context import ContextAssembler, ContextLimits
from memory_svc.embeddings import Embedder
from memory_svc.erasure import Eraser
from memory_svc.facts import FactExtractor
from memory_svc.feedback import FeedbackStore
from memory_svc.history import History
from memory_svc.long_term import LongTermMemory
from memory_svc.settings import MemorySettings
from memory_svc.summary import Summarizer, SummaryCache
from memory_svc.tokens import LocalTokenCounter, TokenCounter
from memory_svc.user_state import UserState

__all__ = ["Components", "build_components"]


@dataclass(frozen=True)
class Components:
    settings: MemorySettings
    counter: TokenCounter
    history: History
    summaries: SummaryCache
    memories: LongTermMemory
    state: UserState
    feedback: FeedbackStore
    eraser: Eraser
    context: ContextAssembler
    facts: FactExtractor


def build_components(
    settings: MemorySettings,
    redis: aioredis.Redis,
    counter: TokenCounter,
    local: LocalTokenCounter | None,
    summarizer: Summarizer,
    embedder: Embedder,
    facts: FactExtractor,
) -> Components:
    history = History(redis, settings.session_ttl_s)
    summaries = SummaryCache(redis, summarizer, settings.summary_input_tokens)
    memories = LongTermMemory(
        redis,
        embedder,
        merge_threshold=settings.memory_merge_threshold,
        max_per_user=settings.max_memories_per_user,
    )
    limits = ContextLimits(
        summary_max_tokens=settings.summary_max_tokens,
        summary_share=settings.summary_share,
        summary_timeout_s=settings.summary_timeout_s,
        memory_share=settings.memory_share,
        memory_min_score=settings.memory_min_score,
        default_memories=settings.context_memories,
    )
    return Components(
        settings=settings,
        counter=counter,
        history=history,
        summaries=summaries,
        memories=memories,
        state=UserState(redis, settings.max_state_bytes),
        feedback=FeedbackStore(redis),
        eraser=Eraser(redis),
        context=ContextAssembler(history, summaries, memories, counter, local, limits),
        facts=facts,
    )
