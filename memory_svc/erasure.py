"""Erasure of everything a user left: sessions, messages, memories, state, feedback.

Every key that holds a user's data is added to the user's index set in the
same atomic step that writes it (see `keys`), so erasure is one Lua script
that deletes the indexed keys and takes the user's feedback out of the
tenant's feedback index and counters. A user id names a user of the caller's
tenant only: erasure never reaches the same id in another tenant. Being one
script, no append or write of the user can interleave with it.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from memory_svc import keys
from memory_svc.schemas import ErasureReport

__all__ = ["Eraser"]

# KEYS: index, user fb zset, user fb counts, tenant fb zset, tenant fb counts, then user
# keys that must go even if missing from the index. Returns
# {keys deleted, sessions, messages, memories, state, feedback}.
ERASE = """
local index, ufb, ufbn, all, alln = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local fids = redis.call('ZRANGE', ufb, 0, -1)
for _, fid in ipairs(fids) do redis.call('ZREM', all, fid) end
local counts = redis.call('HGETALL', ufbn)
for i = 1, #counts, 2 do
  -- A zero would be sent as '-0', which HINCRBY refuses as not an integer.
  local n = tonumber(counts[i + 1])
  if n ~= 0 then redis.call('HINCRBY', alln, counts[i], -n) end
end
local sessions, messages, memories, state, deleted = 0, 0, 0, 0, 0
local members = redis.call('SMEMBERS', index)
for i = 6, #KEYS do members[#members + 1] = KEYS[i] end
members[#members + 1] = ufb
members[#members + 1] = ufbn
for _, key in ipairs(members) do
  local suffix = string.sub(key, -5)
  if suffix == ':meta' then sessions = sessions + redis.call('EXISTS', key)
  elseif suffix == ':msgs' then messages = messages + redis.call('LLEN', key)
  elseif key == KEYS[6] then state = math.max(state, redis.call('EXISTS', key))
  elseif key == KEYS[7] then memories = math.max(memories, redis.call('HLEN', key)) end
  deleted = deleted + redis.call('DEL', key)
end
deleted = deleted + redis.call('DEL', index)
return {deleted, sessions, messages, memories, state, #fids}
"""


class Eraser:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._erase = redis.register_script(ERASE)

    async def erase(self, uid: str) -> ErasureReport:
        space = keys.current()
        uk = space.user(uid)
        reply = await self._erase(
            keys=[
                uk.index,
                uk.fb,
                uk.fb_counts,
                space.feedback_all,
                space.feedback_counts,
                uk.state,
                uk.mem,
                uk.mvec,
                uk.midx,
                uk.sessions,
            ]
        )
        deleted, sessions, messages, memories, state, feedback = (int(v) for v in reply)
        return ErasureReport(
            user_id=uid,
            keys_deleted=deleted,
            sessions=sessions,
            messages=messages,
            memories=memories,
            state=bool(state),
            feedback=feedback,
        )
