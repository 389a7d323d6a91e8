"""The Redis key space of memory_svc: every tenant's keys under a prefix of its own.

Every key is built by the `KeySpace` of one tenant, and a request only ever
gets the space of its own caller (`current()`), so a session id, a user id or
a feedback record is only found inside the tenant that wrote it: another
tenant asking for the same id reads and writes keys that are not those.

    tenant "default"   mem:<key>              (the first version's names, unchanged)
    any other tenant   mem:t:<tenant>:<key>

where <key> is one of

    s:<sid>:meta         hash    session: user_id, created_at, updated_at, seq, ttl_s
    s:<sid>:msgs         list    message JSON, oldest first (index = seq - 1)
    s:<sid>:ids          hash    message id -> seq (lookups, idempotent appends)
    s:<sid>:summary      hash    running summary: text, upto_seq, model, updated_at,
                                 narrative (the model's part), stated (JSON: the user's statements)
    u:<uid>:keys         set     every key holding this user's data (erasure reads it)
    u:<uid>:sessions     zset    sid -> last activity (session listing)
    u:<uid>:state        hash    doc (JSON), etag, updated_at
    u:<uid>:mem          hash    memory id -> memory JSON
    u:<uid>:mvec         hash    memory id -> float32 vector (little-endian)
    u:<uid>:midx         zset    memory id -> created_at (listing order)
    u:<uid>:fb           zset    feedback id -> created_at
    u:<uid>:fbn          hash    feedback counts of the user: total, positive, negative
    fb:<fid>             hash    one feedback (fid derives from session and message)
    fb:all               zset    feedback id -> created_at, every feedback of the tenant
    fb:n                 hash    feedback counts of the tenant: total, positive, negative
    fb:s:<sid>           zset    feedback id -> created_at, of one session
    fb:s:<sid>:n         hash    feedback counts of one session

and one key outside every tenant:

    mem:fb-tenants       set     every tenant that stored feedback (an admin's
                                 listing of all tenants reads it; "default" is
                                 always read, its first-version records predate it)

The default tenant keeps the first version's names, so data written before
tenants existed is the default tenant's as it stands: nothing migrates at
start, no start-up can half-finish a rename, and an old and a new instance can
share one Redis during a rolling upgrade. No two spaces can spell the same key:
a default key's first segment after `mem:` is `s`, `u` or `fb`, never `t`; a
tenant name (`TENANT_PATTERN`) and an id (`ID_PATTERN`) contain no ':', so the
segment after `mem:t:` is exactly one tenant and each id is exactly one
segment; `fb-tenants` is none of `s`, `u`, `fb` or `t`.

A session's keys expire together (its retention); a user's keys never do. A
session that belongs to a user, and its feedback keys, are listed in the user's
`keys` set when they are written, in the same atomic step, so erasure finds them.
"""

from __future__ import annotations

import re
from functools import lru_cache

from common.caller import DEFAULT_TENANT, current_caller, valid_tenant
from common.contracts.memory import ID_PATTERN

__all__ = [
    "FEEDBACK_TENANTS",
    "ID_PATTERN",
    "KeySpace",
    "SessionKeys",
    "UserKeys",
    "current",
    "space",
    "valid_id",
]

PREFIX = "mem:"
FEEDBACK_TENANTS = f"{PREFIX}fb-tenants"
# Ids go into key names: their alphabet has no ':' so one id never spells another's keys.
_ID_RE = re.compile(ID_PATTERN)


def valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


class SessionKeys:
    __slots__ = ("ids", "meta", "msgs", "summary")

    def __init__(self, session_prefix: str, sid: str) -> None:
        base = f"{session_prefix}{sid}:"
        self.meta = base + "meta"
        self.msgs = base + "msgs"
        self.ids = base + "ids"
        self.summary = base + "summary"

    def all(self) -> list[str]:
        return [self.meta, self.msgs, self.ids, self.summary]


class UserKeys:
    __slots__ = ("fb", "fb_counts", "index", "mem", "midx", "mvec", "sessions", "state")

    def __init__(self, user_prefix: str, uid: str) -> None:
        base = f"{user_prefix}{uid}:"
        self.index = base + "keys"
        self.sessions = base + "sessions"
        self.state = base + "state"
        self.mem = base + "mem"
        self.mvec = base + "mvec"
        self.midx = base + "midx"
        self.fb = base + "fb"
        self.fb_counts = base + "fbn"


class KeySpace:
    """Every key of one tenant; the Lua scripts get its prefixes to derive keys from."""

    __slots__ = (
        "feedback_all",
        "feedback_counts",
        "prefix",
        "session_prefix",
        "tenant",
        "user_prefix",
    )

    def __init__(self, tenant: str) -> None:
        if not valid_tenant(tenant):
            raise ValueError(f"not a tenant name: {tenant!r}")
        self.tenant = tenant
        self.prefix = PREFIX if tenant == DEFAULT_TENANT else f"{PREFIX}t:{tenant}:"
        self.session_prefix = f"{self.prefix}s:"
        self.user_prefix = f"{self.prefix}u:"
        self.feedback_all = f"{self.prefix}fb:all"
        self.feedback_counts = f"{self.prefix}fb:n"

    def session(self, sid: str) -> SessionKeys:
        return SessionKeys(self.session_prefix, sid)

    def user(self, uid: str) -> UserKeys:
        return UserKeys(self.user_prefix, uid)

    def feedback(self, fid: str) -> str:
        return f"{self.prefix}fb:{fid}"

    def feedback_session(self, sid: str) -> str:
        return f"{self.prefix}fb:s:{sid}"

    def feedback_session_counts(self, sid: str) -> str:
        return f"{self.prefix}fb:s:{sid}:n"


@lru_cache(maxsize=1024)
def space(tenant: str) -> KeySpace:
    """The key space of `tenant` (raises ValueError for a name outside `TENANT_PATTERN`)."""
    return KeySpace(tenant)


def current() -> KeySpace:
    """The key space of the tenant of the request being served."""
    return space(current_caller().tenant)
