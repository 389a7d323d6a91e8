"""API keys, stored hashed in Redis.

A key is `sk-gw-<id>-<secret>`; Redis holds only its SHA-256 (a leaked dump
does not leak keys) under `gateway:key:<sha256>`, a hash of the key's record,
and `gateway:key_ids` maps each id to its hash so it can be revoked by id.
Revoked keys stay (marked) so that their callers get 403, not 401.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

from redis.asyncio import Redis

__all__ = ["KEY_PREFIX", "ApiKey", "KeyStore", "hash_key", "key_id"]

KEY_PREFIX = "sk-gw-"
# What `KeyStore.create` makes: the prefix, a hex id, a URL-safe secret.
_KEY_FORMAT = re.compile(r"^" + re.escape(KEY_PREFIX) + r"([0-9a-f]{1,32})-[A-Za-z0-9_-]{1,128}$")
_RECORD = "gateway:key:"
_IDS = "gateway:key_ids"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def key_id(key: str) -> str | None:
    """The id a key names (not yet checked against the store); None when malformed."""
    match = _KEY_FORMAT.match(key)
    return match.group(1) if match else None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass
class ApiKey:
    id: str
    name: str
    created_at: float
    revoked: bool = False
    # Per-key limits; None: the gateway's defaults.
    rpm_limit: int | None = None
    tpm_limit: int | None = None

    @classmethod
    def from_redis(cls, raw: Mapping[bytes | str, bytes | str]) -> ApiKey:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        return cls(
            id=fields["id"],
            name=fields.get("name", ""),
            created_at=float(fields.get("created_at", 0)),
            revoked=fields.get("revoked") == "1",
            rpm_limit=int(fields["rpm_limit"]) if fields.get("rpm_limit") else None,
            tpm_limit=int(fields["tpm_limit"]) if fields.get("tpm_limit") else None,
        )

    def to_redis(self) -> dict[str, str]:
        record = asdict(self)
        record["revoked"] = "1" if self.revoked else "0"
        return {k: "" if v is None else str(v) for k, v in record.items()}

    def public(self) -> dict[str, Any]:
        return asdict(self)


class KeyStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def create(
        self, name: str = "", rpm_limit: int | None = None, tpm_limit: int | None = None
    ) -> tuple[str, ApiKey]:
        """A new key and its record; the key itself is shown once and never stored."""
        key_id = secrets.token_hex(4)
        key = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(24)}"
        record = ApiKey(key_id, name, time.time(), rpm_limit=rpm_limit, tpm_limit=tpm_limit)
        digest = hash_key(key)
        async with self.redis.pipeline(transaction=True) as pipe:
            # redis-py's mapping type is invariant in its (wide) key type.
            pipe.hset(_RECORD + digest, mapping=cast("dict[Any, Any]", record.to_redis()))
            pipe.hset(_IDS, key_id, digest)
            await pipe.execute()
        return key, record

    @staticmethod
    def record_key(key: str) -> str:
        """The Redis hash that holds the record of `key` (by its SHA-256)."""
        return _RECORD + hash_key(key)

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

    async def any_keys(self) -> bool:
        return bool(await self.redis.hlen(_IDS))
