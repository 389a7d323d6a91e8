"""API keys, stored hashed in Redis: who a key is (tenant, role, scopes) and its limits.

A key is `sk-gw-<id>-<secret>`; Redis holds only its SHA-256 (a leaked dump
does not leak keys) under `gateway:key:<sha256>`, a hash of the key's record,
and `gateway:key_ids` maps each id to its hash so it can be revoked by id.
Revoked keys stay (marked) so that their callers get 403, not 401.

Records of the first version have no tenant, role or scopes: they read as
tenant `default`, role `member`, `DEFAULT_MEMBER_SCOPES`, and `migrate`
writes those fields once (the gateway runs it on start).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar, cast

from redis.asyncio import Redis

from common.caller import (
    ALL_SCOPES,
    DEFAULT_MEMBER_SCOPES,
    DEFAULT_TENANT,
    ROLES,
    Caller,
    Role,
    valid_tenant,
)

__all__ = [
    "BOOTSTRAP_SECRET_MIN_CHARS",
    "KEY_PREFIX",
    "ApiKey",
    "InvalidKeySpec",
    "KeyStore",
    "hash_key",
    "key_id",
    "new_key",
]

KEY_PREFIX = "sk-gw-"
# What `KeyStore.create` makes: the prefix, a hex id, a URL-safe secret.
_KEY_FORMAT = re.compile(r"^" + re.escape(KEY_PREFIX) + r"([0-9a-f]{1,32})-([A-Za-z0-9_-]{1,128})$")
# A key chosen by an operator (the bootstrap key) must be at least as strong as ours.
BOOTSTRAP_SECRET_MIN_CHARS = 32
_RECORD = "gateway:key:"
_IDS = "gateway:key_ids"

# Fills in the fields a first-version record lacks, once: a record that has them, or
# that is gone, is left alone. KEYS: the records; ARGV: tenant, role, scopes.
_MIGRATE_SCRIPT = """
local migrated = 0
for _, record in ipairs(KEYS) do
  if redis.call('EXISTS', record) == 1 and redis.call('HEXISTS', record, 'scopes') == 0 then
    redis.call('HSET', record, 'tenant', ARGV[1], 'role', ARGV[2], 'scopes', ARGV[3])
    migrated = migrated + 1
  end
end
return migrated
"""

# Stores a new record unless its id is taken, atomically. KEYS[1] the ids hash, KEYS[2] the
# record; ARGV[1] the id, ARGV[2] the key's hash, then the record's fields and values.
_REGISTER_SCRIPT = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
return 1
"""


class InvalidKeySpec(ValueError):
    """A key's tenant, role, scopes or format outside what the gateway accepts."""


# A record's field names as Redis returns them (bytes unless the client decodes) or as
# `to_redis` writes them (str): a Mapping is invariant in its keys, hence the type variable.
_FieldName = TypeVar("_FieldName", bound=bytes | str)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def key_id(key: str) -> str | None:
    """The id a key names (not yet checked against the store); None when malformed."""
    match = _KEY_FORMAT.fullmatch(key)
    return match.group(1) if match else None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh key string (stored nowhere): a random 8-hex id and a 32-character secret."""
    return f"{KEY_PREFIX}{secrets.token_hex(4)}-{secrets.token_urlsafe(24)}"


def scopes_text(scopes: Iterable[str]) -> str:
    """Scopes as a record stores them (and the Lua authorizer reads them): sorted, spaced."""
    return " ".join(sorted(scopes))


@dataclass
class ApiKey:
    id: str
    name: str
    created_at: float
    revoked: bool = False
    # Per-key limits; None: the gateway's defaults.
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    tenant: str = DEFAULT_TENANT
    role: Role = "member"
    scopes: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_MEMBER_SCOPES))

    def __post_init__(self) -> None:
        if not valid_tenant(self.tenant):
            raise InvalidKeySpec(
                f"tenant {self.tenant!r} is not a valid name: lower-case letters, digits, "
                "'_' and '-', starting with a letter or digit, at most 63 characters"
            )
        if self.role not in ROLES:
            raise InvalidKeySpec(f"role must be one of {list(ROLES)}, not {self.role!r}")
        unknown = sorted(set(self.scopes) - set(ALL_SCOPES))
        if unknown:
            raise InvalidKeySpec(f"unknown scope(s) {unknown}; known: {list(ALL_SCOPES)}")

    @classmethod
    def from_redis(cls, raw: Mapping[_FieldName, bytes | str]) -> ApiKey:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        # A field a first-version record lacks reads as its default (see `migrate`).
        scopes = fields.get("scopes")
        return cls(
            id=fields["id"],
            name=fields.get("name", ""),
            created_at=float(fields.get("created_at", 0)),
            revoked=fields.get("revoked") == "1",
            rpm_limit=int(fields["rpm_limit"]) if fields.get("rpm_limit") else None,
            tpm_limit=int(fields["tpm_limit"]) if fields.get("tpm_limit") else None,
            tenant=fields.get("tenant") or DEFAULT_TENANT,
            role=cast("Role", fields.get("role") or "member"),
            # Scopes of a later version that this one does not know grant nothing here.
            scopes=frozenset(DEFAULT_MEMBER_SCOPES if scopes is None else scopes.split())
            & frozenset(ALL_SCOPES),
        )

    def to_redis(self) -> dict[str, str]:
        record = asdict(self)
        record["revoked"] = "1" if self.revoked else "0"
        record["scopes"] = scopes_text(self.scopes)
        return {k: "" if v is None else str(v) for k, v in record.items()}

    def public(self) -> dict[str, Any]:
        """The record as `list` and `create --json` show it (never the key)."""
        return {**asdict(self), "scopes": sorted(self.scopes)}

    def caller(self) -> Caller:
        """The identity a request made with this key runs under."""
        return Caller(tenant=self.tenant, key_id=self.id, role=self.role, scopes=self.scopes)


class KeyStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._migrate = redis.register_script(_MIGRATE_SCRIPT)
        self._register = redis.register_script(_REGISTER_SCRIPT)

    async def create(
        self,
        name: str = "",
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        *,
        tenant: str = DEFAULT_TENANT,
        role: Role = "member",
        scopes: Iterable[str] = DEFAULT_MEMBER_SCOPES,
    ) -> tuple[str, ApiKey]:
        """A new key and its record; the key itself is shown once and never stored."""
        key = new_key()
        record = await self.register(
            key, name, rpm_limit, tpm_limit, tenant=tenant, role=role, scopes=scopes
        )
        return key, record

    async def register(
        self,
        key: str,
        name: str = "",
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        *,
        tenant: str = DEFAULT_TENANT,
        role: Role = "member",
        scopes: Iterable[str] = DEFAULT_MEMBER_SCOPES,
    ) -> ApiKey:
        """Store the record of a given key (its hash only); refuses an id already in use."""
        ident = key_id(key)
        if ident is None:
            raise InvalidKeySpec(f"a key has the form {KEY_PREFIX}<hex id>-<secret>")
        record = ApiKey(
            ident,
            name,
            time.time(),
            rpm_limit=rpm_limit,
            tpm_limit=tpm_limit,
            tenant=tenant,
            role=role,
            scopes=frozenset(scopes),
        )
        digest = hash_key(key)
        fields = [item for pair in record.to_redis().items() for item in pair]
        stored = await self._register(keys=[_IDS, _RECORD + digest], args=[ident, digest, *fields])
        # The id names the key's rate-limit counters and its revocation: one key per id.
        if not stored:
            raise InvalidKeySpec(f"a key with id {ident} exists already")
        return record

    @staticmethod
    def record_key(key: str) -> str:
        """The Redis hash that holds the record of `key` (by its SHA-256)."""
        return _RECORD + hash_key(key)

    @staticmethod
    def ids_key() -> str:
        """The Redis hash from key ids to their hashes (its length: how many keys exist)."""
        return _IDS

    async def lookup(self, key: str) -> ApiKey | None:
        raw = await self.redis.hgetall(self.record_key(key))
        return ApiKey.from_redis(raw) if raw else None

    async def revoke(self, key_id: str) -> bool:
        digest = await self.redis.hget(_IDS, key_id)
        if digest is None:
            return False
        await self.redis.hset(_RECORD + _text(digest), "revoked", "1")
        return True

    async def list(self) -> list[ApiKey]:
        digests = await self.redis.hvals(_IDS)
        keys = []
        for digest in digests:
            raw = await self.redis.hgetall(_RECORD + _text(digest))
            if raw:
                keys.append(ApiKey.from_redis(raw))
        return sorted(keys, key=lambda k: k.created_at)

    async def count(self) -> int:
        """How many keys exist, revoked ones included."""
        return int(await self.redis.hlen(_IDS))

    async def migrate(self) -> int:
        """Write tenant `default`, role `member` and the default scopes into first-version
        records (those without scopes); returns how many were migrated. Idempotent."""
        records = [_RECORD + _text(d) for d in await self.redis.hvals(_IDS)]
        if not records:
            return 0
        args = [DEFAULT_TENANT, "member", scopes_text(DEFAULT_MEMBER_SCOPES)]
        return int(await self._migrate(keys=records, args=args))
