"""The running summary of a session's older turns: written by moe_svc, cached in Redis.

A summary covers messages 1..upto_seq (system messages aside: those are always
sent whole). When context assembly drops turns past what the cached summary
covers, the summary is extended: the previous summary plus the newly dropped
turns go to moe_svc, and the result replaces the cached one only if it covers
more (two concurrent refreshes cannot move it backwards). A gap longer than one
call's transcript (`input_tokens`, sized to the model's window) is folded in
oldest first, a chunk per call, and each step is cached as it lands, so the
first turns of a long conversation are summarised rather than cut. A refresh
runs at most once at a time per session in this process, and one that outlives
the caller's wait still lands in the cache for the next request.

The summary has two parts. What the user said of themselves ("My dog is called
Pixel") is kept by rule, in the third person and in their own words
(`memory_svc.facts.first_person_statements`), newest first when room runs out:
a small model folding summary after summary drops such facts, and they are what a
user expects an assistant to remember. The model writes the rest (its echoes of
the prompt and repeated sentences are cut).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from typing import Protocol

import redis.asyncio as aioredis

from common.chat import ChatClient, estimate_tokens
from common.contracts.memory import ContextSummary, Message
from common.errors import ServiceError
from common.http_client import ServiceClient
from memory_svc import keys
from memory_svc.facts import first_person_statements
from memory_svc.redis_conn import decode_map

__all__ = ["MoeSummarizer", "Summarizer", "SummaryCache", "SummaryUnavailable"]

logger = logging.getLogger("memory_svc.summary")

SYSTEM_INSTRUCTION = (
    "You keep a running summary of a conversation between a user and an assistant. "
    "Write a short factual summary in the third person: who the user is, what they "
    "asked, what was decided or answered, and any facts, names or numbers worth "
    "remembering. Merge the previous summary with the new messages. Output only the summary."
)
# The model's part gets at least this many tokens, whatever the statements take.
MIN_NARRATIVE_TOKENS = 48
# A message longer than a whole chunk is cut to about this many characters a token
# (under English's four, so that the cut stays within the chunk for other text too).
CHARS_PER_TOKEN = 3

# The summary's first part: what the user said of themselves, at most this long.
MAX_STATED_CHARS = 480
STATED_HEADER = "What the user said about themselves:"
# Where a small model starts echoing its prompt instead of summarising.
ECHO_MARKERS = ["New messages:", "Previous summary:", "\nuser:", "\nassistant:"]
_SENTENCE = re.compile(r"(?<=[.!?])\s+")

# KEYS: summary hash, session meta. ARGV: text, upto_seq, model, narrative, stated (JSON).
# Replaces only a summary that covers less, and writes nothing for a session deleted
# meanwhile.
STORE = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'upto_seq') or '0')
if tonumber(ARGV[2]) <= current then return 0 end
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], 'text', ARGV[1], 'upto_seq', ARGV[2], 'model', ARGV[3],
  'narrative', ARGV[4], 'stated', ARGV[5], 'updated_at', string.format('%d.%06d', t[1], t[2]))
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
    text = "\n".join(f"{m.role}: {m.content}" for m in messages)
    head = f"Previous summary:\n{previous}\n\n" if previous else ""
    return f"{head}New messages:\n{text}\n\nUpdated summary:"


def stated(previous: Sequence[str], messages: Sequence[Message]) -> list[str]:
    """What the user said of themselves: `previous`, then what `messages` add, the
    oldest dropped first past MAX_STATED_CHARS (a newer statement may correct it)."""
    kept = list(previous)
    for m in messages:
        if m.role == "user":
            kept += [s for s in first_person_statements(m.content) if s not in kept]
    while kept and sum(len(s) + 1 for s in kept) > MAX_STATED_CHARS:
        kept.pop(0)
    return kept


def compose(statements: Sequence[str], narrative: str) -> str:
    head = f"{STATED_HEADER} {' '.join(statements)}\n" if statements else ""
    return head + narrative


def cleaned(text: str) -> str:
    """The model's summary without an echo of its prompt or a sentence said twice."""
    for marker in ECHO_MARKERS:
        cut = text.find(marker)
        if cut >= 0:
            text = text[:cut]
    seen: set[str] = set()
    kept: list[str] = []
    for sentence in _SENTENCE.split(text.strip()):
        key = " ".join(re.findall(r"\w+", sentence.lower()))
        if key and key not in seen:
            seen.add(key)
            kept.append(sentence)
    return " ".join(kept)


def chunks(messages: Sequence[Message], input_tokens: int) -> list[list[Message]]:
    """`messages` in order, in runs of at most `input_tokens` (their own counts); a
    message longer than that alone is cut to fit (its start kept: what it opens with
    is usually what it is about)."""
    runs: list[list[Message]] = []
    run: list[Message] = []
    used = 0
    for m in messages:
        if m.tokens > input_tokens:
            m = m.model_copy(
                update={
                    "content": m.content[: input_tokens * CHARS_PER_TOKEN] + " ...",
                    "tokens": input_tokens,
                }
            )
        if run and used + m.tokens > input_tokens:
            runs.append(run)
            run, used = [], 0
        run.append(m)
        used += m.tokens
    if run:
        runs.append(run)
    return runs


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
            completion = await self._chat.complete(
                prompt, max_tokens=max_tokens, temperature=0, stop=ECHO_MARKERS
            )
        except ServiceError as exc:
            raise SummaryUnavailable(f"moe_svc could not summarise: {exc}") from exc
        text = cleaned(completion.text)
        if not text:
            raise SummaryUnavailable("moe_svc returned an empty summary")
        return text, self._chat.name


class SummaryCache:
    """Cached summaries in Redis, and single-flight refreshes per session."""

    def __init__(
        self, redis: aioredis.Redis, summarizer: Summarizer, input_tokens: int = 1024
    ) -> None:
        """`input_tokens`: the most transcript tokens one summarisation call gets."""
        self._redis = redis
        self._summarizer = summarizer
        self._input_tokens = input_tokens
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
        narrative, statements, model = await self._parts(k, previous)
        runs = chunks(messages, self._input_tokens)
        text = compose(statements, narrative or "")
        for n, run in enumerate(runs, 1):
            statements = stated(statements, run)
            room = max(MIN_NARRATIVE_TOKENS, max_tokens - estimate_tokens(compose(statements, "")))
            narrative, model = await self._summarizer.summarize(narrative, run, room)
            text = compose(statements, narrative)
            # Each step is kept: a refresh cut short still leaves the turns it covered.
            await self._store(
                keys=[k.summary, k.meta],
                args=[text, run[-1].seq, model, narrative, json.dumps(statements)],
            )
            if len(runs) > 1:
                logger.info(
                    "summary folded",
                    extra={
                        "summary_key": k.summary,
                        "chunk": n,
                        "chunks": len(runs),
                        "upto_seq": run[-1].seq,
                    },
                )
        return ContextSummary(text=text, upto_seq=messages[-1].seq, status="refreshed", model=model)

    async def _parts(
        self, k: keys.SessionKeys, previous: ContextSummary | None
    ) -> tuple[str | None, list[str], str | None]:
        """(the model's part, the user's statements, model) of the summary being extended."""
        if previous is None:
            return None, [], None
        narrative, raw = await self._redis.hmget(k.summary, ["narrative", "stated"])
        try:
            statements = [str(s) for s in json.loads(raw)] if raw else []
        except ValueError:
            statements = []
        # A summary stored before it had parts: its whole text is the model's part.
        text = narrative.decode() if isinstance(narrative, bytes) else narrative
        return text or previous.text, statements, previous.model
