"""Feedback on messages: one rating (and comment) per message, listable and countable.

A feedback record keeps a copy of the rated message, the prompt it answered and
the turns before (and, for a pick between two answers, the answer it was picked
over) so that it outlives the session's retention: `feedback_export` turns them
into training data. Records stored before prompts were kept still read, without. Records are
indexed three ways (all of the tenant's feedback, per session, per user) with
counters kept next to each index; one Lua script writes a record, its indexes
and its counters together, so counts always match what listing finds.

Records live in their tenant's key space. A listing reads the caller's tenant;
an admin's listing reads every tenant that ever stored feedback (or the one it
names) and merges them newest first, each record naming its tenant.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from common.caller import DEFAULT_TENANT, Caller, valid_tenant
from common.contracts.memory import (
    Feedback,
    FeedbackCounts,
    FeedbackRequest,
    FeedbackTurn,
    Message,
)
from common.errors import BadRequest, Forbidden
from memory_svc import keys
from memory_svc.history import History
from memory_svc.keys import KeySpace
from memory_svc.redis_conn import decode, decode_map

__all__ = ["FeedbackStore", "answered_turns", "listed_tenant", "rated_conversation"]

# KEYS: record, tenant zset, tenant counts, session zset, session counts, tenant registry.
# ARGV: id, session_id, message_id, rating, has_comment, comment, user_id, role, content,
#       the tenant's user key prefix, tenant, prompt ('' with no user turn before),
#       context (JSON list of turns), preferred_over ('' for none), rejected content.
# Returns {created, created_at, updated_at, preferred_over, rejected_content}: a rating
# without a pick keeps the pick stored before.
UPSERT = """
local rec, all, alln, sess, sessn = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local fid, rating, uid, uprefix = ARGV[1], tonumber(ARGV[4]), ARGV[7], ARGV[10]
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
local counters = {alln, sessn}
if uid ~= '' then counters[3] = uprefix .. uid .. ':fbn' end
local old = redis.call('HGET', rec, 'rating')
local created = 0
local field = rating > 0 and 'positive' or 'negative'
if old then
  if tonumber(old) ~= rating then
    local old_field = tonumber(old) > 0 and 'positive' or 'negative'
    for _, c in ipairs(counters) do
      redis.call('HINCRBY', c, old_field, -1)
      redis.call('HINCRBY', c, field, 1)
    end
  end
else
  created = 1
  redis.call('HSET', rec, 'created_at', now)
  for _, c in ipairs(counters) do
    redis.call('HINCRBY', c, 'total', 1)
    redis.call('HINCRBY', c, field, 1)
  end
  redis.call('ZADD', all, now, fid)
  redis.call('ZADD', sess, now, fid)
  redis.call('SADD', KEYS[6], ARGV[11])
  if uid ~= '' then
    redis.call('ZADD', uprefix .. uid .. ':fb', now, fid)
    redis.call('SADD', uprefix .. uid .. ':keys', rec, sess, sessn,
      uprefix .. uid .. ':fb', uprefix .. uid .. ':fbn')
  end
end
redis.call('HSET', rec, 'id', fid, 'session_id', ARGV[2], 'message_id', ARGV[3],
  'rating', rating, 'user_id', uid, 'message_role', ARGV[8], 'message_content', ARGV[9],
  'updated_at', now)
if ARGV[5] == '1' then redis.call('HSET', rec, 'comment', ARGV[6])
else redis.call('HDEL', rec, 'comment') end
if ARGV[12] ~= '' then redis.call('HSET', rec, 'prompt', ARGV[12], 'context', ARGV[13]) end
if ARGV[14] ~= '' then
  redis.call('HSET', rec, 'preferred_over', ARGV[14], 'rejected_content', ARGV[15])
end
return {created, redis.call('HGET', rec, 'created_at'), now,
  redis.call('HGET', rec, 'preferred_over') or '',
  redis.call('HGET', rec, 'rejected_content') or ''}
"""

# Filtered listings read their index in batches of this many records.
SCAN_BATCH = 500
# What a rating keeps of the conversation before the rated answer: the turns read back
# from the session, and the most kept as context before the prompt.
CONVERSATION_WINDOW = 64
CONTEXT_TURNS = 16


def answered_turns(before: Sequence[Message]) -> tuple[str | None, list[FeedbackTurn]]:
    """What the answer after `before` (oldest first) answered: the prompt and its context.

    The prompt is the last user turn; the context, up to `CONTEXT_TURNS` turns before it.
    A user turn repeated word for word right after the answers to it is a regeneration
    (the UI asks the same prompt again): the earlier attempt is not part of the context,
    so both answers share one prompt and pair up.
    """
    last = next((i for i in range(len(before) - 1, -1, -1) if before[i].role == "user"), None)
    if last is None:
        return None, []
    prompt = before[last].content
    earlier = list(before[:last])
    while True:
        repeat = next(
            (i for i in range(len(earlier) - 1, -1, -1) if earlier[i].role != "assistant"), None
        )
        if repeat is None or earlier[repeat].role != "user" or earlier[repeat].content != prompt:
            break
        earlier = earlier[:repeat]
    context = [FeedbackTurn(role=m.role, content=m.content) for m in earlier[-CONTEXT_TURNS:]]
    return prompt, context


def feedback_id(session_id: str, message_id: str) -> str:
    digest = hashlib.sha256(f"{session_id}\n{message_id}".encode()).hexdigest()
    return f"fb_{digest[:24]}"


def _record(raw: Mapping[Any, Any], tenant: str) -> Feedback:
    fields: dict[str, Any] = dict(decode_map(raw))
    fields["rating"] = int(fields["rating"])
    fields["user_id"] = fields.get("user_id") or None
    fields["context"] = json.loads(fields.get("context") or "[]")
    # The tenant is where the record was found, not a stored field: a first-version
    # record (default tenant) carries none.
    fields["tenant"] = tenant
    return Feedback.model_validate(fields)


def _counts(raw: Mapping[Any, Any]) -> FeedbackCounts:
    fields = {k: int(v) for k, v in decode_map(raw).items()}
    return FeedbackCounts(
        total=fields.get("total", 0),
        positive=fields.get("positive", 0),
        negative=fields.get("negative", 0),
    )


def _sum(counts: Sequence[FeedbackCounts]) -> FeedbackCounts:
    return FeedbackCounts(
        total=sum(c.total for c in counts),
        positive=sum(c.positive for c in counts),
        negative=sum(c.negative for c in counts),
    )


def listed_tenant(caller: Caller, asked: str | None) -> str | None:
    """The tenant whose feedback `caller` lists when asking for `asked`; None: every tenant.

    A member lists its own tenant only; an admin lists every tenant unless it names one.
    """
    if asked is None:
        return None if caller.is_admin else caller.tenant
    if asked != caller.tenant and not caller.is_admin:
        raise Forbidden(
            "Only an admin key lists another tenant's feedback.",
            param="tenant",
            code="tenant_forbidden",
        )
    return asked


async def rated_conversation(
    history: History, request: FeedbackRequest
) -> tuple[Message, list[Message], Message | None]:
    """The rated message, the messages before it, and the answer it was picked over.

    A pick names another answer of the same session (404 when there is none, 400 when it
    is the rated message itself or not an answer).
    """
    message = await history.find(request.session_id, request.message_id)
    first = max(1, message.seq - CONVERSATION_WINDOW)
    before = await history.range(request.session_id, first, message.seq - 1)
    if request.preferred_over is None:
        return message, before, None
    if request.preferred_over == request.message_id:
        raise BadRequest(
            "preferred_over must name another answer than message_id.",
            param="preferred_over",
            code="invalid_value",
        )
    rejected = await history.find(request.session_id, request.preferred_over)
    if message.role != "assistant" or rejected.role != "assistant":
        raise BadRequest(
            "A pick compares two answers: message_id and preferred_over must both name "
            "assistant messages.",
            param="preferred_over",
            code="invalid_value",
        )
    return message, before, rejected


class FeedbackStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._upsert = redis.register_script(UPSERT)

    async def record(
        self,
        request: FeedbackRequest,
        message: Message,
        user_id: str | None,
        before: Sequence[Message],
        rejected: Message | None = None,
    ) -> tuple[Feedback, bool]:
        """Store (or replace) the caller's tenant's rating of `message`: (feedback, created).

        `before`: the session's messages before `message`, oldest first (its prompt and
        context are kept from them); `rejected`: the answer it was picked over, if any.
        """
        space = keys.current()
        fid = feedback_id(request.session_id, request.message_id)
        sid = request.session_id
        prompt, context = answered_turns(before)
        reply = await self._upsert(
            keys=[
                space.feedback(fid),
                space.feedback_all,
                space.feedback_counts,
                space.feedback_session(sid),
                space.feedback_session_counts(sid),
                keys.FEEDBACK_TENANTS,
            ],
            args=[
                fid,
                sid,
                request.message_id,
                request.rating,
                "1" if request.comment is not None else "0",
                request.comment or "",
                user_id or "",
                message.role,
                message.content,
                space.user_prefix,
                space.tenant,
                prompt or "",
                json.dumps([turn.model_dump() for turn in context]),
                rejected.id if rejected is not None else "",
                rejected.content if rejected is not None else "",
            ],
        )
        created = int(reply[0])
        created_at, updated_at, preferred_over, rejected_content = (decode(v) for v in reply[1:])
        feedback = Feedback(
            id=fid,
            tenant=space.tenant,
            session_id=sid,
            message_id=request.message_id,
            rating=request.rating,
            comment=request.comment,
            user_id=user_id,
            message_role=message.role,
            message_content=message.content,
            created_at=float(created_at),
            updated_at=float(updated_at),
            prompt=prompt,
            context=context if prompt is not None else [],
            preferred_over=preferred_over or None,
            rejected_content=rejected_content if preferred_over else None,
        )
        return feedback, bool(created)

    async def each(self, space: KeySpace) -> AsyncIterator[list[Feedback]]:
        """Every record of `space`'s tenant, oldest first, in batches of `SCAN_BATCH`."""
        start = 0
        while True:
            ids: list[Any] = await self._redis.zrange(
                space.feedback_all, start, start + SCAN_BATCH - 1
            )
            if not ids:
                return
            yield await self._load([(space, decode(fid)) for fid in ids])
            start += SCAN_BATCH

    async def page(
        self,
        *,
        tenant: str | None,
        session_id: str | None,
        user_id: str | None,
        rating: int | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Feedback], bool, FeedbackCounts]:
        """Newest first, with the counts of everything that matches the filters.

        `tenant` None reads every tenant that stored feedback (see `listed_tenant`).
        """
        spaces = [keys.space(tenant)] if tenant is not None else await self._spaces()
        indexes = [_index(space, session_id, user_id) for space in spaces]
        needs_scan = rating is not None or (session_id is not None and user_id is not None)
        if not needs_scan:
            # One tenant pages in Redis; several merge their newest offset+limit each.
            first = offset if len(spaces) == 1 else 0
            async with self._redis.pipeline(transaction=False) as pipe:
                for index, counts_key in indexes:
                    pipe.zrevrange(index, first, offset + limit - 1, withscores=True)
                    pipe.hgetall(counts_key)
                replies = await pipe.execute()
            counts = _sum([_counts(raw) for raw in replies[1::2]])
            newest = sorted(
                (
                    (float(score), space, decode(fid))
                    for space, entries in zip(spaces, replies[0::2], strict=True)
                    for fid, score in entries
                ),
                key=lambda entry: entry[0],
                reverse=True,
            )
            chosen = newest[offset - first : offset - first + limit]
            items = await self._load([(space, fid) for _, space, fid in chosen])
            return items, offset + limit < counts.total, counts

        matches: list[Feedback] = []
        for space, (index, _) in zip(spaces, indexes, strict=True):
            matches += await self._scan(space, index, rating, user_id)
        matches.sort(key=lambda item: item.created_at, reverse=True)
        positive = sum(1 for m in matches if m.rating == 1)
        counts = FeedbackCounts(
            total=len(matches), positive=positive, negative=len(matches) - positive
        )
        return matches[offset : offset + limit], offset + limit < len(matches), counts

    async def _spaces(self) -> list[KeySpace]:
        # The default tenant always: its first-version records predate the registry.
        members = await self._redis.smembers(keys.FEEDBACK_TENANTS)
        names = {decode(m) for m in members} | {DEFAULT_TENANT}
        return [keys.space(name) for name in sorted(names) if valid_tenant(name)]

    async def _scan(
        self, space: KeySpace, index: str, rating: int | None, user_id: str | None
    ) -> list[Feedback]:
        matches: list[Feedback] = []
        start = 0
        while True:
            ids: list[Any] = await self._redis.zrevrange(index, start, start + SCAN_BATCH - 1)
            if not ids:
                return matches
            for item in await self._load([(space, decode(fid)) for fid in ids]):
                if (rating is None or item.rating == rating) and (
                    user_id is None or item.user_id == user_id
                ):
                    matches.append(item)
            start += SCAN_BATCH

    async def _load(self, entries: Sequence[tuple[KeySpace, str]]) -> list[Feedback]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for space, fid in entries:
                pipe.hgetall(space.feedback(fid))
            records = await pipe.execute()
        return [
            _record(raw, space.tenant)
            for (space, _), raw in zip(entries, records, strict=True)
            if raw
        ]


def _index(space: KeySpace, session_id: str | None, user_id: str | None) -> tuple[str, str]:
    """The index a listing reads in `space`, and its counters."""
    if session_id is not None:
        return space.feedback_session(session_id), space.feedback_session_counts(session_id)
    if user_id is not None:
        uk = space.user(user_id)
        return uk.fb, uk.fb_counts
    return space.feedback_all, space.feedback_counts
