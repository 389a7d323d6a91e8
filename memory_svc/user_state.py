"""A JSON document per user, with optimistic concurrency through ETags.

Every write gives the document a new random ETag. `If-Match` makes a write
conditional on the ETag the client last saw (412 otherwise); `If-None-Match: *`
makes a PUT create-only. The check and the write are one WATCH/MULTI/EXEC
transaction, so a condition that held when read still holds when written: a
write that loses the race sees the other's ETag on its retry and answers 412.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from common.errors import BadRequest, Conflict, NotFound, PayloadTooLarge, PreconditionFailed
from memory_svc import keys
from memory_svc.locks import KeyedLocks
from memory_svc.merge_patch import apply_merge_patch
from memory_svc.redis_conn import decode

__all__ = ["StateDocument", "UserState", "parse_etags"]

MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class StateDocument:
    doc: dict[str, Any]
    etag: str  # quoted, as it goes in the ETag header


def parse_etags(header: str | None) -> list[str] | None:
    """The entity tags of an If-Match / If-None-Match header (`["*"]` for a star)."""
    if header is None:
        return None
    tags = [t.strip() for t in header.split(",") if t.strip()]
    return tags or None


def _matches(tags: list[str], etag: str | None) -> bool:
    if etag is None:
        return False
    # If-Match compares strongly: a weak tag (W/"...") never matches.
    return "*" in tags or etag in tags


class UserState:
    def __init__(self, redis: aioredis.Redis, max_bytes: int) -> None:
        self._redis = redis
        self._max_bytes = max_bytes
        self._locks = KeyedLocks()

    async def get(self, uid: str) -> StateDocument:
        doc, etag = await self._redis.hmget(keys.current().user(uid).state, ["doc", "etag"])
        if doc is None or etag is None:
            raise NotFound(f"User {uid!r} has no state yet (PUT or PATCH creates it).", param="uid")
        return StateDocument(json.loads(doc), decode(etag))

    async def put(
        self, uid: str, doc: Any, if_match: list[str] | None, if_none_match: list[str] | None
    ) -> tuple[StateDocument, bool]:
        """Replace the document: (new document, whether it was created)."""
        if not isinstance(doc, dict):
            raise BadRequest("The state document must be a JSON object.", code="invalid_state")
        return await self._write(uid, lambda _: doc, if_match, if_none_match)

    async def patch(
        self, uid: str, patch: Any, if_match: list[str] | None
    ) -> tuple[StateDocument, bool]:
        """Apply a JSON merge patch (RFC 7386); a missing document starts as `{}`."""
        if not isinstance(patch, dict):
            raise BadRequest(
                "A merge patch of the state must be a JSON object (RFC 7386); "
                "to replace the whole document use PUT.",
                code="invalid_patch",
            )
        return await self._write(
            uid, lambda current: apply_merge_patch(current, patch), if_match, None
        )

    async def _write(
        self,
        uid: str,
        change: Callable[[dict[str, Any]], Any],
        if_match: list[str] | None,
        if_none_match: list[str] | None,
    ) -> tuple[StateDocument, bool]:
        # One lock per state key: the same user id in two tenants is two users.
        async with self._locks(keys.current().user(uid).state):
            return await self._transaction(uid, change, if_match, if_none_match)

    async def _transaction(
        self,
        uid: str,
        change: Callable[[dict[str, Any]], Any],
        if_match: list[str] | None,
        if_none_match: list[str] | None,
    ) -> tuple[StateDocument, bool]:
        uk = keys.current().user(uid)
        for _ in range(MAX_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(uk.state)
                    raw_doc, raw_etag = await pipe.hmget(uk.state, ["doc", "etag"])
                    current_etag = decode(raw_etag) if raw_etag is not None else None
                    if if_match is not None and not _matches(if_match, current_etag):
                        raise PreconditionFailed(
                            f"The state of {uid!r} is at ETag {current_etag or 'none (absent)'}, "
                            f"not {', '.join(if_match)}: read it again and reapply the change.",
                            param="If-Match",
                            code="etag_mismatch",
                        )
                    if if_none_match is not None and _matches(if_none_match, current_etag):
                        raise PreconditionFailed(
                            f"The state of {uid!r} exists already (ETag {current_etag}).",
                            param="If-None-Match",
                            code="state_exists",
                        )
                    current = json.loads(raw_doc) if raw_doc is not None else {}
                    new_doc = change(current)
                    text = json.dumps(new_doc, ensure_ascii=False, separators=(",", ":"))
                    if len(text.encode()) > self._max_bytes:
                        raise PayloadTooLarge(
                            f"The state document would be {len(text.encode())} bytes; "
                            f"at most {self._max_bytes} are kept.",
                            code="state_too_large",
                        )
                    etag = f'"{uuid.uuid4().hex[:20]}"'
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(uk.state, mapping={"doc": text, "etag": etag})
                    pipe.sadd(uk.index, uk.state)
                    await pipe.execute()
                    return StateDocument(new_doc, etag), raw_doc is None
                except WatchError:
                    continue
        raise Conflict(f"The state of {uid!r} changed too often to write; retry.")
