"""Feedback on messages: one rating (and comment) per message, listable and countable.

A feedback record keeps a copy of the rated message so that it outlives the
session's retention (the gateway's feedback loop reads it later). Records are
indexed three ways (all of the tenant's feedback, per session, per user) with
counters kept next to each index; one Lua script writes a record, its indexes
and its counters together, so counts always match what listing finds.

Records live in their tenant's key space. A listing reads the caller's tenant;
an admin's listing reads every tenant that ever stored feedback (or the one it
names) and merges them newest first, each record naming its tenant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from common.caller import DEFAULT_TENANT, Caller, valid_tenant
from common.contracts.memory import Feedback, FeedbackCounts, FeedbackRequest, Message
from common.errors import Forbidden
from memory_svc import keys
from memory_svc.keys import KeySpace
from memory_svc.redis_conn import decode, decode_map

__all__ = ["FeedbackStore", "listed_tenant"]

# KEYS: record, tenant zset, tenant counts, session zset, session counts, tenant registry.
# ARGV: id, session_id, message_id, rating, has_comment, comment, user_id, role, content,
#       the tenant's user key prefix, tenant. Returns {created, created_at, updated_at}.
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
return {created, redis.call('HGET', rec, 'created_at'), now}
"""

# Filtered listings read their index in batches of this many records.
SCAN_BATCH = 500


def feedback_id(session_id: str, message_id: str) -> str:
    digest = hashlib.sha256(f"{session_id}\n{message_id}".encode()).hexdigest()
    return f"fb_{digest[:24]}"


def _record(raw: Mapping[Any, Any], tenant: str) -> Feedback:
    fields: dict[str, Any] = dict(decode_map(raw))
    fields["rating"] = int(fields["rating"])
    fields["user_id"] = fields.get("user_id") or None
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


class FeedbackStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._upsert = redis.register_script(UPSERT)

    async def record(
        self, request: FeedbackRequest, message: Message, user_id: str | None
    ) -> tuple[Feedback, bool]:
        """Store (or replace) the caller's tenant's rating of `message`: (feedback, created)."""
        space = keys.current()
        fid = feedback_id(request.session_id, request.message_id)
        sid = request.session_id
        created, created_at, updated_at = await self._upsert(
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
            ],
        )
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
        )
        return feedback, bool(created)

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
