"""Conversation history: append, page, list, export, retention and deletion of sessions.

Appends are one Lua script, so a message, its number, the session's metadata,
its expiry and the user's indexes change together or not at all, and
concurrent appends to a session are numbered in the order Redis ran them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis

from common.contracts.memory import Message, MessageIn, SessionInfo
from common.errors import Conflict, NotFound
from memory_svc import keys
from memory_svc.redis_conn import decode, decode_map

__all__ = ["History", "message_from_json", "session_info"]

# KEYS: meta, msgs, ids, summary. ARGV: sid, uid ('' if none), default ttl_s, the tenant's
# user key prefix, then per message: id, role, body (JSON object text without seq/created_at).
# The user's keys are derived in the script: the owner may only be known from meta.
APPEND = """
local meta, msgs, ids, summary = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local sid, uid, default_ttl, uprefix = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local owner = redis.call('HGET', meta, 'user_id')
if owner and owner ~= '' then
  if uid ~= '' and uid ~= owner then return {'USER', owner} end
  uid = owner
elseif uid ~= '' and redis.call('EXISTS', meta) == 1 then
  -- A session's owner is fixed when it starts: its earlier keys (feedback included)
  -- were never indexed under a user, so erasure could not find them.
  return {'USER', ''}
end
local n = (#ARGV - 4) / 3
local seen = {}
for i = 0, n - 1 do
  local seq = redis.call('HGET', ids, ARGV[5 + 3 * i])
  if seq then seen[#seen + 1] = redis.call('LINDEX', msgs, tonumber(seq) - 1) end
end
if #seen == n then return {'DUP', unpack(seen)} end
if #seen > 0 then return {'PARTIAL'} end
local t = redis.call('TIME')
local now = string.format('%d.%06d', t[1], t[2])
local out = {'OK'}
local sys = redis.call('HGET', meta, 'sys') or ''
for i = 0, n - 1 do
  local id, role, body = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local seq = redis.call('HINCRBY', meta, 'seq', 1)
  local stored = '{"seq":' .. seq .. ',"created_at":' .. now .. ',' .. string.sub(body, 2)
  redis.call('RPUSH', msgs, stored)
  redis.call('HSET', ids, id, seq)
  if role == 'system' then sys = sys .. seq .. ',' end
  out[#out + 1] = stored
end
redis.call('HSETNX', meta, 'created_at', now)
redis.call('HSETNX', meta, 'ttl_s', default_ttl)
redis.call('HSET', meta, 'updated_at', now, 'sys', sys, 'sid', sid)
if uid ~= '' then
  redis.call('HSET', meta, 'user_id', uid)
  redis.call('SADD', uprefix .. uid .. ':keys', meta, msgs, ids, summary)
  redis.call('ZADD', uprefix .. uid .. ':sessions', now, sid)
end
local ttl = tonumber(redis.call('HGET', meta, 'ttl_s'))
for _, key in ipairs(KEYS) do
  if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
return out
"""

# KEYS: meta, msgs, ids, summary. ARGV: ttl_s. Returns 0 when there is no such session.
SET_TTL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ttl = tonumber(ARGV[1])
redis.call('HSET', KEYS[1], 'ttl_s', ttl)
for _, key in ipairs(KEYS) do
  if ttl > 0 then redis.call('EXPIRE', key, ttl) else redis.call('PERSIST', key) end
end
return 1
"""

# KEYS: meta, msgs, ids, summary. ARGV: sid, the tenant's user key prefix. Returns messages
# deleted, or -1.
DELETE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local owner = redis.call('HGET', KEYS[1], 'user_id')
local count = redis.call('LLEN', KEYS[2])
redis.call('DEL', unpack(KEYS))
if owner and owner ~= '' then
  redis.call('ZREM', ARGV[2] .. owner .. ':sessions', ARGV[1])
  redis.call('SREM', ARGV[2] .. owner .. ':keys', unpack(KEYS))
end
return count
"""

# KEYS: user sessions zset, user key index. ARGV: the tenant's session key prefix, then sids
# whose meta was missing when listed. A session that expired leaves its id in the user's
# indexes; this drops those entries.
FORGET_EXPIRED = """
for i = 2, #ARGV do
  local sid = ARGV[i]
  local base = ARGV[1] .. sid .. ':'
  if redis.call('EXISTS', base .. 'meta') == 0 then
    redis.call('ZREM', KEYS[1], sid)
    redis.call('SREM', KEYS[2], base .. 'meta', base .. 'msgs', base .. 'ids', base .. 'summary')
  end
end
return 1
"""


def _text(value: bytes | str | None) -> str | None:
    return None if value is None else decode(value)


def message_from_json(raw: bytes | str) -> Message:
    return Message.model_validate_json(raw)


def session_info(sid: str, meta: Mapping[Any, Any]) -> SessionInfo:
    fields = decode_map(meta)
    ttl_s = int(fields.get("ttl_s", "0"))
    updated_at = float(fields["updated_at"])
    return SessionInfo(
        id=sid,
        user_id=fields.get("user_id") or None,
        created_at=float(fields["created_at"]),
        updated_at=updated_at,
        message_count=int(fields.get("seq", "0")),
        ttl_s=ttl_s,
        expires_at=updated_at + ttl_s if ttl_s > 0 else None,
    )


class History:
    """Sessions and their messages in Redis."""

    def __init__(self, redis: aioredis.Redis, default_ttl_s: int) -> None:
        self._redis = redis
        self._default_ttl_s = default_ttl_s
        self._append = redis.register_script(APPEND)
        self._set_ttl = redis.register_script(SET_TTL)
        self._delete = redis.register_script(DELETE)
        self._forget_expired = redis.register_script(FORGET_EXPIRED)

    async def append(
        self,
        sid: str,
        messages: Sequence[MessageIn],
        token_counts: Sequence[int],
        user_id: str | None,
    ) -> tuple[list[Message], bool]:
        """Store `messages` in order; returns them and whether they were new.

        Messages whose ids are all stored already are a retry: the stored ones
        come back (created False) when they say the same, else 409.
        """
        space = keys.current()
        argv: list[Any] = [sid, user_id or "", self._default_ttl_s, space.user_prefix]
        for message, tokens in zip(messages, token_counts, strict=True):
            mid = message.id or f"msg_{uuid.uuid4().hex}"
            body = {
                "id": mid,
                "session_id": sid,
                "role": message.role,
                "content": message.content,
                "name": message.name,
                "user_id": message.user_id or user_id,
                "tokens": tokens,
                "metadata": message.metadata,
            }
            argv += [mid, message.role, json.dumps(body, ensure_ascii=False)]
        k = space.session(sid)
        reply = await self._append(keys=k.all(), args=argv)
        status = _text(reply[0])
        if status == "USER":
            owner = _text(reply[1])
            reason = (
                f"belongs to another user ({owner!r})"
                if owner
                else "was started without a user id; start a new session to attach one"
            )
            raise Conflict(
                f"Session {sid!r} {reason}.", param="user_id", code="session_user_mismatch"
            )
        if status == "PARTIAL":
            raise Conflict(
                "Some of these message ids are stored already and some are not; "
                "a retried append must repeat the original request.",
                param="messages",
                code="message_id_conflict",
            )
        stored = [message_from_json(raw) for raw in reply[1:]]
        if status == "DUP":
            for sent, existing in zip(messages, stored, strict=True):
                if (sent.role, sent.content) != (existing.role, existing.content):
                    raise Conflict(
                        f"Message id {existing.id!r} is taken by another message.",
                        param="id",
                        code="message_id_conflict",
                    )
            return stored, False
        return stored, True

    async def info(self, sid: str) -> SessionInfo:
        meta = await self._redis.hgetall(keys.current().session(sid).meta)
        if not meta:
            raise NotFound(f"No session {sid!r} (never written, deleted or expired).", param="sid")
        return session_info(sid, meta)

    async def page(
        self, sid: str, *, limit: int, before: int | None
    ) -> tuple[list[Message], bool, int | None]:
        """Messages newest first, older than seq `before`: (page, has_more, next_before)."""
        info = await self.info(sid)
        top = info.message_count if before is None else min(before - 1, info.message_count)
        if top < 1:
            return [], False, None
        first = max(1, top - limit + 1)
        raw = await self._redis.lrange(keys.current().session(sid).msgs, first - 1, top - 1)
        page = [message_from_json(r) for r in reversed(raw)]
        has_more = first > 1
        return page, has_more, first if has_more else None

    async def range(self, sid: str, first_seq: int, last_seq: int) -> list[Message]:
        """Messages with seq in [first_seq, last_seq], oldest first."""
        if last_seq < first_seq:
            return []
        raw = await self._redis.lrange(
            keys.current().session(sid).msgs, first_seq - 1, last_seq - 1
        )
        return [message_from_json(r) for r in raw]

    async def by_seqs(self, sid: str, seqs: Sequence[int]) -> list[Message]:
        if not seqs:
            return []
        msgs = keys.current().session(sid).msgs
        async with self._redis.pipeline(transaction=False) as pipe:
            for seq in seqs:
                pipe.lindex(msgs, seq - 1)
            raw = await pipe.execute()
        return [message_from_json(r) for r in raw if r is not None]

    async def system_seqs(self, sid: str) -> list[int]:
        sys = _text(await self._redis.hget(keys.current().session(sid).meta, "sys")) or ""
        return [int(s) for s in sys.split(",") if s]

    async def find(self, sid: str, message_id: str) -> Message:
        k = keys.current().session(sid)
        seq = await self._redis.hget(k.ids, message_id)
        raw = await self._redis.lindex(k.msgs, int(seq) - 1) if seq is not None else None
        if raw is None:
            await self.info(sid)  # 404 for the session itself when it is the one missing
            raise NotFound(f"No message {message_id!r} in session {sid!r}.", param="message_id")
        return message_from_json(raw)

    async def all_messages(self, sid: str) -> list[Message]:
        raw = await self._redis.lrange(keys.current().session(sid).msgs, 0, -1)
        return [message_from_json(r) for r in raw]

    async def set_ttl(self, sid: str, ttl_s: int) -> SessionInfo:
        if not await self._set_ttl(keys=keys.current().session(sid).all(), args=[ttl_s]):
            raise NotFound(f"No session {sid!r}.", param="sid")
        return await self.info(sid)

    async def delete(self, sid: str) -> int:
        space = keys.current()
        count = int(
            await self._delete(keys=space.session(sid).all(), args=[sid, space.user_prefix])
        )
        if count < 0:
            raise NotFound(f"No session {sid!r}.", param="sid")
        return count

    async def list_for_user(
        self, uid: str, *, limit: int, offset: int
    ) -> tuple[list[SessionInfo], bool]:
        """The user's sessions, most recently active first."""
        space = keys.current()
        uk = space.user(uid)
        members: list[Any] = await self._redis.zrevrange(uk.sessions, offset, offset + limit)
        sids = [decode(s) for s in members]
        async with self._redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.hgetall(space.session(sid).meta)
            metas = await pipe.execute()
        found = [session_info(sid, meta) for sid, meta in zip(sids, metas, strict=True) if meta]
        expired = [sid for sid, meta in zip(sids, metas, strict=True) if not meta]
        if expired:
            await self._forget_expired(
                keys=[uk.sessions, uk.index], args=[space.session_prefix, *expired]
            )
        has_more = len(sids) > limit
        return found[:limit], has_more
