"""Context assembly: the messages to send to the model within a token budget.

What goes in, by priority:

1. the system prompt and the latest turn (the last user message and what
   follows it): always; when they alone exceed the budget the request is refused;
2. the user's long-term memories most relevant to the latest user message,
   within `memory_share` of what is left;
3. the older turns, newest first, while they fit, leaving room for
4. a running summary of the turns that did not fit (at most `summary_share`).

When no summary can be had (moe_svc down, or not asked for) the room kept for
it goes to more old turns and the rest are dropped; the response says how many.
Counts are the chat template's (see `tokens`), so `total_tokens` is what the
model's prompt will hold, assistant header included, and never above the budget.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from common.contracts.memory import (
    ContextMemory,
    ContextMessage,
    ContextRequest,
    ContextResponse,
    ContextSummary,
    Message,
)
from common.errors import BadRequest, ServiceError
from memory_svc.history import History
from memory_svc.long_term import LongTermMemory
from memory_svc.summary import SummaryCache, SummaryUnavailable
from memory_svc.tokens import GENERATION_PROMPT, LocalTokenCounter, TokenCounter, render_message

__all__ = ["ContextAssembler", "ContextLimits"]

logger = logging.getLogger("memory_svc.context")

MEMORY_HEADER = "Known facts about the user (long-term memory):"
SUMMARY_HEADER = "Summary of the earlier conversation:"
# History is read backwards in chunks of this many messages.
CHUNK = 64
# Fewer summary tokens than this are not worth a call to moe_svc.
MIN_SUMMARY_TOKENS = 16


@dataclass(frozen=True)
class ContextLimits:
    summary_max_tokens: int
    summary_share: float
    summary_timeout_s: float
    memory_share: float
    memory_min_score: float
    default_memories: int


@dataclass
class _Tail:
    """The newest messages of a session, read backwards until the budget is covered."""

    messages: list[Message] = field(default_factory=list)  # chronological, no system ones
    first_loaded: int = 1  # seq of the oldest message read
    unloaded_count: int = 0  # non-system messages older than first_loaded


def _memory_block(memories: list[ContextMemory]) -> str:
    return "\n".join([MEMORY_HEADER, *(f"- {m.text}" for m in memories)])


class ContextAssembler:
    def __init__(
        self,
        history: History,
        summaries: SummaryCache,
        memories: LongTermMemory,
        counter: TokenCounter,
        local: LocalTokenCounter | None,
        limits: ContextLimits,
    ) -> None:
        self._history = history
        self._summaries = summaries
        self._memories = memories
        self._counter = counter
        self._local = local
        self._limits = limits

    async def _count_message(self, role: str, content: str) -> int:
        return await self._counter.count(render_message(role, content))

    async def _read_tail(self, sid: str, last_seq: int, system: set[int], budget: int) -> _Tail:
        tail = _Tail(first_loaded=last_seq + 1)
        tokens = 0
        has_user = False
        while tail.first_loaded > 1 and not (has_user and tokens > budget):
            first = max(1, tail.first_loaded - CHUNK)
            chunk = await self._history.range(sid, first, tail.first_loaded - 1)
            chunk = [m for m in chunk if m.seq not in system]
            tail.messages[:0] = chunk
            tail.first_loaded = first
            tokens += sum(m.tokens for m in chunk)
            has_user = has_user or any(m.role == "user" for m in chunk)
        tail.unloaded_count = (tail.first_loaded - 1) - sum(
            1 for s in system if s < tail.first_loaded
        )
        return tail

    async def assemble(self, sid: str, request: ContextRequest) -> ContextResponse:
        """The messages of session `sid` for the model, within `request.budget_tokens`.

        Step by step:

        1. the system messages: `request.system_prompt` when given, else the
           session's own; their tokens, and the assistant header's, are counted;
        2. the newest history that could fit is read, and split at the last user
           message into the latest turn (that message and what follows it) and the
           older turns;
        3. system + header + latest turn must fit the budget; what is left is free;
        4. the user's long-term memories most relevant to the latest user message
           take up to `memory_share` of the free tokens (one system message);
        5. when the older turns overflow (or were not all read) and a summary is
           asked for, room is reserved for it (`summary_share`, at most
           `summary_max_tokens`); the newest older turns fill the rest;
        6. the turns left out get a running summary (cached, refreshed through
           moe_svc, or stale), cut down to its room or left out with a warning;
           without one, its room goes to more older turns;
        7. the turns neither included nor summarised are counted as `dropped`.

        Returns the messages in order (system, memories, summary, the older turns
        kept, the latest turn) with their total tokens, never above the budget,
        and the summary, memories and warnings behind them.

        Raises `NotFound` for an unknown session, and `BadRequest` when the
        session has no user message (`no_user_turn`) or the budget cannot hold
        the system messages and the latest turn (`budget_too_small`).
        """
        info = await self._history.info(sid)
        budget = request.budget_tokens
        warnings: list[str] = []

        system_seqs = await self._history.system_seqs(sid)
        if request.system_prompt is not None:
            system_msgs = [ContextMessage(role="system", content=request.system_prompt)]
            system_tokens = await self._count_message("system", request.system_prompt)
        else:
            stored = await self._history.by_seqs(sid, system_seqs)
            system_msgs = [
                ContextMessage(role=m.role, content=m.content, name=m.name) for m in stored
            ]
            system_tokens = sum(m.tokens for m in stored)
        header_tokens = await self._counter.count(GENERATION_PROMPT)

        tail = await self._read_tail(sid, info.message_count, set(system_seqs), budget)
        user_at = max((i for i, m in enumerate(tail.messages) if m.role == "user"), default=None)
        if user_at is None:
            raise BadRequest(
                f"Session {sid!r} has no user message to build a context for.",
                param="sid",
                code="no_user_turn",
            )
        latest, older = tail.messages[user_at:], tail.messages[:user_at]
        required = header_tokens + system_tokens + sum(m.tokens for m in latest)
        if required > budget:
            raise BadRequest(
                f"budget_tokens={budget} cannot hold the system prompt and the latest user "
                f"turn, which take {required} tokens; ask for at least {required}.",
                param="budget_tokens",
                code="budget_too_small",
            )
        free = budget - required

        memories, memory_msg, memory_tokens = await self._pick_memories(
            info.user_id,
            latest[0].content,
            request,
            math.floor(free * self._limits.memory_share),
            warnings,
        )
        free -= memory_tokens

        wrapper = await self._count_message("system", f"{SUMMARY_HEADER}\n")
        overflow = tail.unloaded_count > 0 or sum(m.tokens for m in older) > free
        reserve = 0
        if request.include_summary and overflow:
            reserve = min(
                self._limits.summary_max_tokens + wrapper,
                math.floor(free * self._limits.summary_share),
            )
        window = self._fit(older, free - reserve)
        first_window_seq = window[0].seq if window else latest[0].seq
        uncovered = [m for m in older if m.seq < first_window_seq]

        summary: ContextSummary | None = None
        summary_msg: ContextMessage | None = None
        summary_tokens = 0
        if (uncovered or tail.unloaded_count) and reserve - wrapper >= MIN_SUMMARY_TOKENS:
            last_uncovered = uncovered[-1].seq if uncovered else tail.first_loaded - 1
            summary = await self._summary(
                sid, last_uncovered, set(system_seqs), reserve - wrapper, warnings
            )
            if summary is not None:
                room = free - sum(m.tokens for m in window)
                text = f"{SUMMARY_HEADER}\n{summary.text}"
                summary_tokens = await self._count_message("system", text)
                if summary_tokens > room and self._local is not None:
                    overhead = await self._count_message("system", "")
                    text = self._local.truncate(text, room - overhead)
                    summary_tokens = await self._count_message("system", text)
                if summary_tokens > room:
                    warnings.append("The summary did not fit in the budget and was left out.")
                    summary, summary_tokens = None, 0
                else:
                    summary_msg = ContextMessage(role="system", content=text)
        if summary is None:
            # No summary: its room goes to more old turns, the rest are dropped.
            window = self._fit(older, free)
            first_window_seq = window[0].seq if window else latest[0].seq
        window_tokens = sum(m.tokens for m in window)
        covered = summary.upto_seq if summary is not None else 0
        dropped = sum(1 for m in older if covered < m.seq < first_window_seq)
        # Unread messages (all older than the window) count unless the summary covers them.
        unread_uncovered = range(covered + 1, tail.first_loaded)
        dropped += len(unread_uncovered) - sum(1 for s in system_seqs if s in unread_uncovered)
        if dropped and summary is None and request.include_summary and not warnings:
            warnings.append(
                f"No room for a summary in this budget; {dropped} older message(s) were dropped."
            )

        messages = [*system_msgs]
        if memory_msg is not None:
            messages.append(memory_msg)
        if summary_msg is not None:
            messages.append(summary_msg)
        for m in (*window, *latest):
            messages.append(ContextMessage(role=m.role, content=m.content, name=m.name))
        total = required + memory_tokens + summary_tokens + window_tokens
        if total > budget:  # the arithmetic above makes this impossible; keep it so
            raise ServiceError("context assembly exceeded its budget", code="internal_error")
        return ContextResponse(
            session_id=sid,
            messages=messages,
            budget_tokens=budget,
            total_tokens=total,
            token_counter=self._counter.source,
            recent_messages=len(window) + len(latest),
            dropped=dropped,
            summary=summary,
            memories=memories,
            warnings=warnings,
        )

    @staticmethod
    def _fit(older: list[Message], room: int) -> list[Message]:
        """The newest of `older` whose tokens add up to at most `room`."""
        used, start = 0, len(older)
        while start > 0 and used + older[start - 1].tokens <= room:
            used += older[start - 1].tokens
            start -= 1
        return older[start:]

    async def _pick_memories(
        self,
        user_id: str | None,
        query: str,
        request: ContextRequest,
        room: int,
        warnings: list[str],
    ) -> tuple[list[ContextMemory], ContextMessage | None, int]:
        k = self._limits.default_memories if request.max_memories is None else request.max_memories
        if user_id is None or k == 0 or room <= 0:
            return [], None, 0
        try:
            found = await self._memories.search(user_id, query, k, self._limits.memory_min_score)
        except ServiceError as exc:
            warnings.append(f"Long-term memories left out: {exc.message}")
            return [], None, 0
        picked = [ContextMemory(id=m.id, text=m.text, score=m.score) for m in found]
        while picked:
            text = _memory_block(picked)
            tokens = await self._count_message("system", text)
            if tokens <= room:
                return picked, ContextMessage(role="system", content=text), tokens
            picked.pop()  # the least relevant goes first
        return [], None, 0

    async def _summary(
        self, sid: str, last_uncovered: int, system: set[int], max_tokens: int, warnings: list[str]
    ) -> ContextSummary | None:
        """A summary through `last_uncovered`: cached, refreshed, stale, or None."""
        cached = await self._summaries.get(sid)
        if cached is not None and cached.upto_seq >= last_uncovered:
            return cached
        first = cached.upto_seq + 1 if cached else 1
        # At most the newest 200 messages of a long gap are folded in (a call per chunk).
        gap = await self._history.range(sid, max(first, last_uncovered - 199), last_uncovered)
        gap = [m for m in gap if m.seq not in system]
        max_tokens = min(self._limits.summary_max_tokens, max_tokens)
        if not gap:  # only system messages since: the cached summary still covers the rest
            return cached
        if max_tokens < MIN_SUMMARY_TOKENS:
            return cached.model_copy(update={"status": "stale"}) if cached else None
        try:
            return await self._summaries.refresh(
                sid, cached, gap, max_tokens, self._limits.summary_timeout_s
            )
        except SummaryUnavailable as exc:
            logger.info("no summary refresh", extra={"session_id": sid, "error": str(exc)})
            if cached is None:
                warnings.append(f"No summary ({exc}); older turns were dropped.")
                return None
            warnings.append(f"Summary not refreshed ({exc}); using an older one.")
            return cached.model_copy(update={"status": "stale"})
