"""The Redis key space of memory_svc: every key starts with `mem:`.

    mem:s:<sid>:meta         hash    session: user_id, created_at, updated_at, seq, ttl_s
    mem:s:<sid>:msgs         list    message JSON, oldest first (index = seq - 1)
    mem:s:<sid>:ids          hash    message id -> seq (lookups, idempotent appends)
    mem:s:<sid>:summary      hash    running summary: text, upto_seq, model, updated_at
    mem:u:<uid>:keys         set     every key holding this user's data (erasure reads it)
    mem:u:<uid>:sessions     zset    sid -> last activity (session listing)
    mem:u:<uid>:state        hash    doc (JSON), etag, updated_at
    mem:u:<uid>:mem          hash    memory id -> memory JSON
    mem:u:<uid>:mvec         hash    memory id -> float32 vector (little-endian)
    mem:u:<uid>:midx         zset    memory id -> created_at (listing order)
    mem:u:<uid>:fb           zset    feedback id -> created_at
    mem:u:<uid>:fbn          hash    feedback counts of the user: total, positive, negative
    mem:fb:<fid>             hash    one feedback (fid derives from session and message)
    mem:fb:all               zset    feedback id -> created_at, every feedback
    mem:fb:n                 hash    feedback counts: total, positive, negative
    mem:fb:s:<sid>           zset    feedback id -> created_at, of one session
    mem:fb:s:<sid>:n         hash    feedback counts of one session

A session's keys expire together (its retention); a user's keys never do. A
session that belongs to a user, and its feedback keys, are listed in the user's
`keys` set when they are written, in the same atomic step, so erasure finds them.
"""

from __future__ import annotations

import re

from common.contracts.memory import ID_PATTERN

__all__ = [
    "FEEDBACK_ALL",
    "FEEDBACK_COUNTS",
    "ID_PATTERN",
    "feedback",
    "feedback_session",
    "feedback_session_counts",
    "session",
    "user",
    "valid_id",
]

PREFIX = "mem:"
# Ids go into key names: their alphabet has no ':' so one id never spells another's keys.
_ID_RE = re.compile(ID_PATTERN)

FEEDBACK_ALL = f"{PREFIX}fb:all"
FEEDBACK_COUNTS = f"{PREFIX}fb:n"


def valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


class SessionKeys:
    __slots__ = ("ids", "meta", "msgs", "summary")

    def __init__(self, sid: str) -> None:
        base = f"{PREFIX}s:{sid}:"
        self.meta = base + "meta"
        self.msgs = base + "msgs"
        self.ids = base + "ids"
        self.summary = base + "summary"

    def all(self) -> list[str]:
        return [self.meta, self.msgs, self.ids, self.summary]


class UserKeys:
    __slots__ = ("fb", "fb_counts", "index", "mem", "midx", "mvec", "sessions", "state")

    def __init__(self, uid: str) -> None:
        base = f"{PREFIX}u:{uid}:"
        self.index = base + "keys"
        self.sessions = base + "sessions"
        self.state = base + "state"
        self.mem = base + "mem"
        self.mvec = base + "mvec"
        self.midx = base + "midx"
        self.fb = base + "fb"
        self.fb_counts = base + "fbn"


def session(sid: str) -> SessionKeys:
    return SessionKeys(sid)


def user(uid: str) -> UserKeys:
    return UserKeys(uid)


def feedback(fid: str) -> str:
    return f"{PREFIX}fb:{fid}"


def feedback_session(sid: str) -> str:
    return f"{PREFIX}fb:s:{sid}"


def feedback_session_counts(sid: str) -> str:
    return f"{PREFIX}fb:s:{sid}:n"
