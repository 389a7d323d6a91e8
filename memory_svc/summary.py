"""The running summary of a session's older turns: written by moe_svc, cached in Redis.

A summary covers messages 1..upto_seq (system messages aside: those are always
sent whole). When context assembly drops turns past what the cached summary
covers, the summary is extended: the previous summary plus the newly dropped
turns go to moe_svc, and the result replaces the cached one only if it covers
more (two concurrent refreshes cannot move it backwards). A refresh runs at
most once at a time per session in this process, and one that outlives the
caller's wait still lands in the cache for the next request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

import redis.asyncio as aioredis

from common.chat import ChatClient
from common.contracts.memory import ContextSummary, Message
from common.errors import ServiceError
from common.http_client import ServiceClient
from memory_svc import keys
from memory_svc.redis_conn import decode_map

__all__ = ["MoeSummarizer", "Summarizer", "SummaryCache", "SummaryUnavailable"]

logger = logging.getLogger("memory_svc.summary")

SYSTEM_INSTRUCTION = (
    "You keep a running summary of a conversation between a user and an assistant. "
    "Write a short factual summary in the third person: who the user is, what they "
    "asked, what was decided or answered, and any facts, names or numbers worth "
    "remembering. Merge the previous summary with the new messages. Output only the summary."
)
# The transcript sent to moe_svc is cut to this many characters (newest kept).
MAX_TRANSCRIPT_CHARS = 12_000

# KEYS: summary hash, session meta. ARGV: text, upto_seq, model. Replaces only a summary
# that covers less, and writes nothing for a session deleted meanwhile.
STORE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'upto_seq') or '0')
if tonumber(ARGV[2]) <= current then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'text', ARGV[1], 'upto_seq', ARGV[2], 'model', ARGV[3],
  'updated_at', string.format('%d.%06d', t[1], t[2]))
local ttl = redis.call('TTL', KEYS[2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
return 1
"""


class SummaryUnavailable(Exception):
    """moe_svc could not write a summary (down, timing out, or answering nonsense)."""


class Summarizer(Protocol):
    async def summarize(
        self, previous: str | None, messages: Sequence[Message], max_tokens: int
    ) -> tuple[str, str]:
        """(summary text, model that wrote it)."""
        ...


def transcript(previous: str | None, messages: Sequence[Message]) -> str:
    lines = [f"{m.role}: {m.content}" for m in messages]
    text = "\n".join(lines)
    if len(text) > MAX_TRANSCRIPT_CHARS:
        text = "...\n" + text[-MAX_TRANSCRIPT_CHARS:]
    head = f"Previous summary:\n{previous}\n\n" if previous else ""
    return f"{head}New messages:\n{text}\n\nUpdated summary:"


class MoeSummarizer:
    """Summaries from moe_svc's OpenAI-compatible chat completions."""

    def __init__(self, client: ServiceClient, model: str | None, timeout_s: float) -> None:
        # Unset model: the first one moe_svc serves (looked up once).
        self._chat = ChatClient(client, model or "", timeout_s)

    async def summarize(
        self, previous: str | None, messages: Sequence[Message], max_tokens: int
    ) -> tuple[str, str]:
        prompt = [
            {"role": "system", "content": SYSTEM_INSTRUCTION},
            {"role": "user", "content": transcript(previous, messages)},
        ]
        try:
            completion = await self._chat.complete(prompt, max_tokens=max_tokens, temperature=0)
        except ServiceError as exc:
            raise SummaryUnavailable(f"moe_svc could not summarise: {exc}") from exc
        text = completion.text.strip()
        if not text:
            raise SummaryUnavailable("moe_svc returned an empty summary")
        return text, self._chat.name


class SummaryCache:
    """Cached summaries in Redis, and single-flight refreshes per session."""

    def __init__(self, redis: aioredis.Redis, summarizer: Summarizer) -> None:
        self._redis = redis
        self._summarizer = summarizer
        self._store = redis.register_script(STORE)
        # Keyed by the summary's key name (tenant included) and the seq it will cover.
        self._inflight: dict[tuple[str, int], asyncio.Task[ContextSummary]] = {}

    async def get(self, sid: str) -> ContextSummary | None:
        raw = await self._redis.hgetall(keys.current().session(sid).summary)
        if not raw:
            return None
        fields = decode_map(raw)
        return ContextSummary(
            text=fields["text"],
            upto_seq=int(fields["upto_seq"]),
            model=fields.get("model") or None,
            updated_at=float(fields["updated_at"]) if "updated_at" in fields else None,
        )

    async def refresh(
        self,
        sid: str,
        previous: ContextSummary | None,
        messages: Sequence[Message],
        max_tokens: int,
        wait_s: float,
    ) -> ContextSummary:
        """A summary through `messages[-1]`, built on `previous`; raises SummaryUnavailable.

        The work is shared by concurrent callers for the same target and keeps
        running (and is cached) when this caller stops waiting after `wait_s`.
        """
        upto = messages[-1].seq
        # The keys are the caller's: taken here, not inside the task that may outlive the call.
        session_keys = keys.current().session(sid)
        key = (session_keys.summary, upto)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(self._build(session_keys, previous, messages, max_tokens))
            self._inflight[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        try:
            return await asyncio.wait_for(asyncio.shield(task), wait_s)
        except TimeoutError:
            raise SummaryUnavailable(
                f"moe_svc did not summarise within {wait_s:.0f}s (the summary is still "
                "being written and will be used by a later request)"
            ) from None

    def _finished(self, key: tuple[str, int], task: asyncio.Task[ContextSummary]) -> None:
        self._inflight.pop(key, None)
        # Read the outcome so that a refresh nobody waited for does not log as unretrieved.
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.info("summary refresh failed", extra={"summary_key": key[0], "error": str(exc)})

    async def _build(
        self,
        k: keys.SessionKeys,
        previous: ContextSummary | None,
        messages: Sequence[Message],
        max_tokens: int,
    ) -> ContextSummary:
        text, model = await self._summarizer.summarize(
            previous.text if previous else None, messages, max_tokens
        )
        upto = messages[-1].seq
        await self._store(keys=[k.summary, k.meta], args=[text, upto, model])
        return ContextSummary(text=text, upto_seq=upto, status="refreshed", model=model)
