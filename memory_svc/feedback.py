"""Feedback on messages: one rating (and comment) per message, listable and countable.

A feedback record keeps a copy of the rated message so that it outlives the
session's retention (the gateway's feedback loop reads it later). Records are
indexed three ways (all feedback, per session, per user) with counters kept
next to each index; one Lua script writes a record, its indexes and its
counters together, so counts always match what listing finds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from common.contracts.memory import Feedback, FeedbackCounts, FeedbackRequest, Message
from memory_svc import keys
from memory_svc.redis_conn import decode, decode_map

__all__ = ["FeedbackStore"]

# KEYS: record, all zset, all counts, session zset, session counts.
# ARGV: id, session_id, message_id, rating, has_comment, comment, user_id, role, content,
#       user key prefix. Returns {created, created_at, updated_at}.
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
return {created, redis.call('HGET', rec, 'created_at'), now}
"""

# Filtered listings read their index in batches of this many records.
SCAN_BATCH = 500


def feedback_id(session_id: str, message_id: str) -> str:
    digest = hashlib.sha256(f"{session_id}\n{message_id}".encode()).hexdigest()
    return f"fb_{digest[:24]}"


def _record(raw: Mapping[Any, Any]) -> Feedback:
    fields: dict[str, Any] = dict(decode_map(raw))
    fields["rating"] = int(fields["rating"])
    fields["user_id"] = fields.get("user_id") or None
    return Feedback.model_validate(fields)


def _counts(raw: Mapping[Any, Any]) -> FeedbackCounts:
    fields = {k: int(v) for k, v in decode_map(raw).items()}
    return FeedbackCounts(
        total=fields.get("total", 0),
        positive=fields.get("positive", 0),
        negative=fields.get("negative", 0),
    )


class FeedbackStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._upsert = redis.register_script(UPSERT)

    async def record(
        self, request: FeedbackRequest, message: Message, user_id: str | None
    ) -> tuple[Feedback, bool]:
        """Store (or replace) the rating of `message`: (feedback, created)."""
        fid = feedback_id(request.session_id, request.message_id)
        sid = request.session_id
        created, created_at, updated_at = await self._upsert(
            keys=[
                keys.feedback(fid),
                keys.FEEDBACK_ALL,
                keys.FEEDBACK_COUNTS,
                keys.feedback_session(sid),
                keys.feedback_session_counts(sid),
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
                "mem:u:",
            ],
        )
        feedback = Feedback(
            id=fid,
            session_id=sid,
            message_id=request.message_id,
            rating=request.rating,
            comment=request.comment,
            user_id=user_id,
            message_role=message.role,
            message_content=message.content,
            created_at=float(created_at),
            updated_at=float(updated_at),
        )
        return feedback, bool(created)

    async def page(
        self,
        *,
        session_id: str | None,
        user_id: str | None,
        rating: int | None,
        limit: int,
        offset: int,
    ) -> tuple[list[Feedback], bool, FeedbackCounts]:
        """Newest first, with the counts of everything that matches the filters."""
        if session_id is not None:
            index, counts_key = (
                keys.feedback_session(session_id),
                keys.feedback_session_counts(session_id),
            )
        elif user_id is not None:
            uk = keys.user(user_id)
            index, counts_key = uk.fb, uk.fb_counts
        else:
            index, counts_key = keys.FEEDBACK_ALL, keys.FEEDBACK_COUNTS
        needs_scan = rating is not None or (session_id is not None and user_id is not None)
        if not needs_scan:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrevrange(index, offset, offset + limit - 1)
                pipe.hgetall(counts_key)
                ids, raw_counts = await pipe.execute()
            counts = _counts(raw_counts)
            return await self._load(ids), offset + limit < counts.total, counts

        matches: list[Feedback] = []
        start = 0
        while True:
            ids = await self._redis.zrevrange(index, start, start + SCAN_BATCH - 1)
            if not ids:
                break
            for item in await self._load(ids):
                if (rating is None or item.rating == rating) and (
                    user_id is None or item.user_id == user_id
                ):
                    matches.append(item)
            start += SCAN_BATCH
        positive = sum(1 for m in matches if m.rating == 1)
        counts = FeedbackCounts(
            total=len(matches), positive=positive, negative=len(matches) - positive
        )
        return matches[offset : offset + limit], offset + limit < len(matches), counts

    async def _load(self, ids: Sequence[Any]) -> list[Feedback]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for fid in ids:
                pipe.hgetall(keys.feedback(decode(fid)))
            records = await pipe.execute()
        return [_record(raw) for raw in records if raw]
