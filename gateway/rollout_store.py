"""A candidate core-model version tried on a share of the traffic, and how its answers fare.

While a rollout runs, each chat request is assigned once, at the gateway: the
candidate when the caller's tenant is one the rollout names, or, for the
others, when the request id falls into the rollout's share (a hash, so the
split is even and needs no state); otherwise the baseline (the version that
was current when the rollout started). The assignment travels to every service
as `X-Model-Version` (`common.request_context`), so that whichever service asks
moe_svc for text, the same version answers.

Each answer of model `auto` is recorded with the version that wrote it (by its
message id, the id feedback rates), and each rating of such an answer with its
value (a second rating of the same message replaces the first). The counts per
version, and whether their difference is more than chance (a two-proportion z
test), are computed from those records when asked.

Redis keys (the gateway's Redis): `rollout:active` (the running rollout, JSON),
`rollout:{id}:answers` and `rollout:{id}:ratings` (hashes by `tenant/message id`),
`rollout:history` (ended rollouts with their outcome and final counts, newest first).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal, ParamSpec, TypeVar

from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.errors import ServiceUnavailable
from common.request_context import MODEL_VERSION_PATTERN

__all__ = [
    "Assignment",
    "Rollout",
    "RolloutRequest",
    "RolloutStats",
    "RolloutStore",
    "VersionCounts",
]

logger = logging.getLogger("gateway.rollout")

ACTIVE_KEY = "rollout:active"
HISTORY_KEY = "rollout:history"
HISTORY_KEPT = 50
# Reading the active rollout once a second per gateway is enough: a change takes effect
# within that second.
CACHE_S = 1.0


class RolloutRequest(BaseModel):
    """`PUT /v1/admin/rollout`: which version to try, on whom."""

    candidate: str = Field(pattern=MODEL_VERSION_PATTERN, description="The version to try.")
    share: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of every other tenant's requests it answers."
    )
    tenants: list[str] = Field(
        default_factory=list, max_length=1000, description="Tenants it answers every request of."
    )


class Rollout(RolloutRequest):
    id: str
    baseline: str | None = Field(description="The version current at the start (null: base).")
    started: int


class Assignment(BaseModel):
    """The version one request is served by, within a rollout."""

    rollout: str
    version: str | None  # what moe_svc is asked for (None: its current model)
    label: str  # what the records call it


class VersionCounts(BaseModel):
    label: str
    answers: int = 0
    rated: int = 0
    up: int = 0
    down: int = 0
    up_rate: float | None = Field(None, description="up / rated (null when none is rated).")


class RolloutStats(BaseModel):
    rollout: Rollout
    versions: list[VersionCounts]
    p_value: float | None = Field(
        None,
        description="Two-sided p of the up rates' difference (two-proportion z test); "
        "null until both versions have ratings.",
    )


def _error(exc: Exception) -> dict[str, str]:
    return {"error": repr(exc)}


def _unavailable(exc: RedisError) -> ServiceUnavailable:
    return ServiceUnavailable(
        "The gateway's Redis is unavailable: the rollout cannot be read or changed; retry.",
        code="redis_unavailable",
        headers={"Retry-After": "5"},
    )


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _needs_redis(
    method: Callable[_P, Coroutine[Any, Any, _T]],
) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """The operator's calls: Redis away answers 503 with Retry-After, not a 500."""

    @functools.wraps(method)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(*args, **kwargs)
        except RedisError as exc:
            raise _unavailable(exc) from exc

    return call


def baseline_label(baseline: str | None) -> str:
    return baseline if baseline is not None else "base"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bucket(request_id: str) -> float:
    """A request id's place in [0, 1), evenly spread."""
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def two_proportion_p(up_a: int, n_a: int, up_b: int, n_b: int) -> float | None:
    """Two-sided p-value of the difference of two proportions (pooled z test)."""
    if n_a == 0 or n_b == 0:
        return None
    pooled = (up_a + up_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return 1.0
    z = (up_a / n_a - up_b / n_b) / spread
    return math.erfc(abs(z) / math.sqrt(2))


class RolloutStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._cached: tuple[float, Rollout | None] | None = None

    async def active(self, fresh: bool = False) -> Rollout | None:
        """The running rollout. `fresh` reads Redis and raises `ServiceUnavailable` when it
        does not answer (the operator's routes); otherwise a second-old reading serves,
        and while Redis is away the last one read (a chat request never fails for it)."""
        now = time.monotonic()
        if not fresh and self._cached is not None and now - self._cached[0] < CACHE_S:
            return self._cached[1]
        try:
            raw = await self.redis.get(ACTIVE_KEY)
        except RedisError as exc:
            if fresh:
                raise _unavailable(exc) from exc
            logger.warning("redis unavailable: the last rollout read serves", extra=_error(exc))
            return self._cached[1] if self._cached is not None else None
        rollout = Rollout.model_validate_json(raw) if raw else None
        self._cached = (now, rollout)
        return rollout

    @_needs_redis
    async def start(self, rollout: Rollout) -> None:
        await self.redis.set(ACTIVE_KEY, rollout.model_dump_json())
        self._cached = None

    @_needs_redis
    async def end(self, rollout: Rollout, outcome: Literal["promoted", "rolled_back"]) -> None:
        """Record the rollout's outcome and counts in the history; no rollout runs after."""
        stats = await self.stats(rollout)
        entry = {"outcome": outcome, "ended": int(time.time()), **stats.model_dump(mode="json")}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(HISTORY_KEY, json.dumps(entry))
            pipe.ltrim(HISTORY_KEY, 0, HISTORY_KEPT - 1)
            pipe.delete(ACTIVE_KEY)
            await pipe.execute()
        self._cached = None

    @_needs_redis
    async def history(self) -> list[dict[str, object]]:
        return [json.loads(raw) for raw in await self.redis.lrange(HISTORY_KEY, 0, -1)]

    async def assign(self, tenant: str, request_id: str) -> Assignment | None:
        """The version a request is served by (None: no rollout runs)."""
        rollout = await self.active()
        if rollout is None:
            return None
        if tenant in rollout.tenants or _bucket(request_id) < rollout.share:
            return Assignment(
                rollout=rollout.id, version=rollout.candidate, label=rollout.candidate
            )
        return Assignment(rollout=rollout.id, version=None, label=baseline_label(rollout.baseline))

    async def record_answer(self, assignment: Assignment, tenant: str, message_id: str) -> None:
        """Note which version wrote an answer; while Redis is away the answer goes out
        uncounted (the rollout's counts miss it, the caller does not)."""
        key = f"rollout:{assignment.rollout}:answers"
        try:
            await self.redis.hset(key, f"{tenant}/{message_id}", assignment.label)
        except RedisError as exc:
            logger.warning("redis unavailable: an answer left uncounted", extra=_error(exc))

    async def record_rating(self, tenant: str, message_id: str, rating: int) -> None:
        """Count a stored rating toward the version that wrote the answer (if a rollout
        did); while Redis is away the rating is stored (memory_svc) but not counted here."""
        try:
            rollout = await self.active(fresh=True)
            if rollout is None:
                return
            field = f"{tenant}/{message_id}"
            if await self.redis.hexists(f"rollout:{rollout.id}:answers", field):
                await self.redis.hset(f"rollout:{rollout.id}:ratings", field, str(rating))
        except (RedisError, ServiceUnavailable) as exc:
            logger.warning("redis unavailable: a rating left uncounted", extra=_error(exc))

    @_needs_redis
    async def stats(self, rollout: Rollout) -> RolloutStats:
        answers = await self.redis.hgetall(f"rollout:{rollout.id}:answers")
        ratings = await self.redis.hgetall(f"rollout:{rollout.id}:ratings")
        baseline = baseline_label(rollout.baseline)
        counts = {label: VersionCounts(label=label) for label in (baseline, rollout.candidate)}
        for field, raw_label in answers.items():
            label = _text(raw_label)
            entry = counts.setdefault(label, VersionCounts(label=label))
            entry.answers += 1
            rating = ratings.get(field)
            if rating is not None:
                entry.rated += 1
                if _text(rating) == "1":
                    entry.up += 1
                else:
                    entry.down += 1
        for entry in counts.values():
            entry.up_rate = round(entry.up / entry.rated, 4) if entry.rated else None
        base, candidate = counts[baseline], counts[rollout.candidate]
        p_value = two_proportion_p(candidate.up, candidate.rated, base.up, base.rated)
        return RolloutStats(
            rollout=rollout,
            versions=list(counts.values()),
            p_value=None if p_value is None else round(p_value, 4),
        )
