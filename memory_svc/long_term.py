"""Long-term memory in the manner of mem0: facts per user, found again by meaning.

Each memory is a JSON record and a unit-length float32 vector, both in Redis
hashes of the user. Adding a fact first looks for a near-duplicate (cosine at
or above `merge_threshold`): if there is one the fact merges into it (the more
detailed wording and the union of metadata are kept, `mentions` counts the
repeats) instead of being stored twice. The look-up and the write are one
optimistic transaction (WATCH/MULTI/EXEC), so two concurrent adds of the same
fact cannot both miss each other. Search is exact (a dot product over the
user's vectors): a user holds thousands of facts at most, which numpy scans in
well under a millisecond.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

import numpy as np
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from common.contracts.memory import Memory, MemorySearchResult
from common.errors import Conflict, NotFound
from memory_svc import keys
from memory_svc.embeddings import Embedder, Vectors
from memory_svc.locks import KeyedLocks
from memory_svc.redis_conn import decode

__all__ = ["LongTermMemory"]

# Optimistic transactions retried this often before giving up with 409.
MAX_ATTEMPTS = 8


def _same_fact(a: str, b: str) -> bool:
    def norm(text: str) -> str:
        return re.sub(r"[\W_]+", " ", text.casefold()).strip()

    return norm(a) == norm(b)


async def _now(redis: aioredis.Redis) -> float:
    # Redis's clock, the one message timestamps come from.
    seconds, micros = await redis.time()
    return float(seconds) + float(micros) / 1e6


class LongTermMemory:
    def __init__(
        self,
        redis: aioredis.Redis,
        embedder: Embedder,
        *,
        merge_threshold: float,
        max_per_user: int,
    ) -> None:
        self._redis = redis
        self._embedder = embedder
        self._merge_threshold = merge_threshold
        self._max_per_user = max_per_user
        self._locks = KeyedLocks()

    @staticmethod
    def _best(vector: Vectors, stored: Mapping[Any, Any]) -> tuple[str | None, float]:
        ids, rows = _matrix(stored, vector.shape[0])
        if not ids:
            return None, -1.0
        scores = rows @ vector
        best = int(np.argmax(scores))
        return ids[best], float(scores[best])

    async def add(
        self, uid: str, text: str, metadata: dict[str, Any]
    ) -> tuple[Memory, str, float | None]:
        """Store a fact, or merge it into its near-duplicate: (memory, event, similarity)."""
        vector = (await self._embedder.embed([text]))[0]
        async with self._locks(keys.current().user(uid).mem):
            return await self._add(uid, text, metadata, vector)

    async def _add(
        self, uid: str, text: str, metadata: dict[str, Any], vector: Vectors
    ) -> tuple[Memory, str, float | None]:
        uk = keys.current().user(uid)
        for _ in range(MAX_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(uk.mvec, uk.mem)
                    best_id, similarity = self._best(vector, await pipe.hgetall(uk.mvec))
                    now = await _now(pipe)
                    if best_id is not None and similarity >= self._merge_threshold:
                        raw = await pipe.hget(uk.mem, best_id)
                        if raw is not None:
                            old = Memory.model_validate_json(raw)
                            memory, event, new_vector = _merge(old, text, metadata, vector, now)
                            pipe.multi()  # type: ignore[no-untyped-call]
                            pipe.hset(uk.mem, memory.id, memory.model_dump_json())
                            if new_vector is not None:
                                pipe.hset(uk.mvec, memory.id, new_vector.tobytes())
                            await pipe.execute()
                            return memory, event, similarity
                    if await pipe.hlen(uk.mem) >= self._max_per_user:
                        raise Conflict(
                            f"User {uid!r} has {self._max_per_user} memories, the most kept; "
                            "delete some first.",
                            code="memory_limit",
                        )
                    memory = Memory(
                        id=f"mem_{uuid.uuid4().hex}",
                        user_id=uid,
                        text=text,
                        metadata=metadata,
                        created_at=now,
                        updated_at=now,
                    )
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(uk.mem, memory.id, memory.model_dump_json())
                    pipe.hset(uk.mvec, memory.id, vector.astype("<f4").tobytes())
                    pipe.zadd(uk.midx, {memory.id: now})
                    pipe.sadd(uk.index, uk.mem, uk.mvec, uk.midx)
                    await pipe.execute()
                    return memory, "added", similarity if best_id is not None else None
                except WatchError:
                    continue
        raise Conflict(f"Memories of {uid!r} changed too often to add this one; retry.")

    async def search(
        self, uid: str, query: str, k: int, min_score: float | None
    ) -> list[MemorySearchResult]:
        uk = keys.current().user(uid)
        if not await self._redis.hlen(uk.mvec):
            return []  # nothing to compare with: no need for rag_svc
        vector = (await self._embedder.embed([query]))[0]
        ids, rows = _matrix(await self._redis.hgetall(uk.mvec), vector.shape[0])
        if not ids:
            return []
        scores = rows @ vector
        order = np.argsort(-scores)[:k]
        chosen = [
            (ids[i], float(scores[i]))
            for i in order
            if min_score is None or float(scores[i]) >= min_score
        ]
        if not chosen:
            return []
        records = await self._redis.hmget(uk.mem, [mid for mid, _ in chosen])
        return [
            MemorySearchResult(**Memory.model_validate_json(raw).model_dump(), score=score)
            for (_, score), raw in zip(chosen, records, strict=True)
            if raw is not None
        ]

    async def get(self, uid: str, mid: str) -> Memory:
        raw = await self._redis.hget(keys.current().user(uid).mem, mid)
        if raw is None:
            raise NotFound(f"No memory {mid!r} for user {uid!r}.", param="mid")
        return Memory.model_validate_json(raw)

    async def page(self, uid: str, *, limit: int, offset: int) -> tuple[list[Memory], int]:
        """Newest first, and how many the user has."""
        uk = keys.current().user(uid)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zrevrange(uk.midx, offset, offset + limit - 1)
            pipe.zcard(uk.midx)
            ids, total = await pipe.execute()
        if not ids:
            return [], int(total)
        records = await self._redis.hmget(uk.mem, ids)
        return [Memory.model_validate_json(r) for r in records if r is not None], int(total)

    async def update(
        self, uid: str, mid: str, text: str | None, metadata: dict[str, Any] | None
    ) -> Memory:
        vector = (await self._embedder.embed([text]))[0] if text is not None else None
        async with self._locks(keys.current().user(uid).mem):
            return await self._update(uid, mid, text, metadata, vector)

    async def _update(
        self,
        uid: str,
        mid: str,
        text: str | None,
        metadata: dict[str, Any] | None,
        vector: Vectors | None,
    ) -> Memory:
        uk = keys.current().user(uid)
        for _ in range(MAX_ATTEMPTS):
            async with self._redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(uk.mem)
                    raw = await pipe.hget(uk.mem, mid)
                    if raw is None:
                        raise NotFound(f"No memory {mid!r} for user {uid!r}.", param="mid")
                    changes: dict[str, Any] = {"updated_at": await _now(pipe)}
                    if text is not None:
                        changes["text"] = text
                    if metadata is not None:
                        changes["metadata"] = metadata
                    memory = Memory.model_validate_json(raw).model_copy(update=changes)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(uk.mem, mid, memory.model_dump_json())
                    if vector is not None:
                        pipe.hset(uk.mvec, mid, vector.astype("<f4").tobytes())
                    await pipe.execute()
                    return memory
                except WatchError:
                    continue
        raise Conflict(f"Memory {mid!r} changed too often to update; retry.")

    async def delete(self, uid: str, mid: str) -> None:
        uk = keys.current().user(uid)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(uk.mem, mid)
            pipe.hdel(uk.mvec, mid)
            pipe.zrem(uk.midx, mid)
            removed, _, _ = await pipe.execute()
        if not removed:
            raise NotFound(f"No memory {mid!r} for user {uid!r}.", param="mid")


def _matrix(stored: Mapping[Any, Any], dim: int) -> tuple[list[str], Vectors]:
    """Ids and stacked vectors; vectors of another size (another model) are skipped."""
    kept = [(decode(k), bytes(v)) for k, v in stored.items() if len(v) == 4 * dim]
    if not kept:
        return [], np.zeros((0, dim), dtype=np.float32)
    ids = [mid for mid, _ in kept]
    blob = b"".join(v for _, v in kept)
    return ids, np.frombuffer(blob, dtype="<f4").reshape(len(ids), dim).astype(np.float32)


def _merge(
    old: Memory, text: str, metadata: dict[str, Any], vector: Vectors, now: float
) -> tuple[Memory, str, Vectors | None]:
    """The near-duplicate `old` after absorbing `text`; the new vector if the wording changed."""
    # The longer wording usually carries more detail ("likes tea" < "likes green tea").
    take_new = not _same_fact(old.text, text) and len(text.strip()) > len(old.text.strip())
    merged_metadata = {**old.metadata, **metadata}
    changed = take_new or merged_metadata != old.metadata
    memory = old.model_copy(
        update={
            "text": text if take_new else old.text,
            "metadata": merged_metadata,
            "updated_at": now,
            "mentions": old.mentions + 1,
        }
    )
    return memory, "merged" if changed else "unchanged", vector if take_new else None
