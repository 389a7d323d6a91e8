"""The rollout's assignment of requests and its statistics (no Redis: a dict stands in)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from common.errors import ServiceUnavailable
from gateway.rollout_store import ACTIVE_KEY, Rollout, RolloutStore, two_proportion_p


class _Redis:
    """The one call `assign` makes."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    async def get(self, key: str) -> Any:
        assert key == ACTIVE_KEY
        return self.value


def _store(share: float, tenants: list[str]) -> RolloutStore:
    rollout = Rollout(
        candidate="cand", share=share, tenants=tenants, id="r1", baseline=None, started=1
    )
    return RolloutStore(_Redis(rollout.model_dump_json()))  # type: ignore[arg-type]


async def test_no_rollout_assigns_nothing() -> None:
    assert await RolloutStore(_Redis(None)).assign("alpha", "rid") is None  # type: ignore[arg-type]


async def test_named_tenants_always_get_the_candidate() -> None:
    store = _store(0.0, ["alpha"])
    for _ in range(20):
        got = await store.assign("alpha", uuid.uuid4().hex)
        assert got is not None and (got.version, got.label) == ("cand", "cand")
    other = await store.assign("beta", uuid.uuid4().hex)
    assert other is not None and (other.version, other.label) == (None, "base")


async def test_the_share_splits_requests_evenly_and_stably() -> None:
    store = _store(0.2, [])
    ids = [uuid.uuid4().hex for _ in range(4000)]
    picked = [(await store.assign("beta", i)) for i in ids]
    share = sum(1 for a in picked if a is not None and a.version == "cand") / len(ids)
    assert 0.17 < share < 0.23
    # The same request id is always assigned the same way (retries see one version).
    again = [(await store.assign("beta", i)) for i in ids[:200]]
    assert [a.version for a in again if a] == [a.version for a in picked[:200] if a]


def test_two_proportion_p() -> None:
    assert two_proportion_p(1, 0, 3, 10) is None
    assert two_proportion_p(50, 100, 50, 100) == 1.0
    # 80/100 against 50/100 is far beyond chance; 6/10 against 5/10 is not.
    strong = two_proportion_p(80, 100, 50, 100)
    weak = two_proportion_p(6, 10, 5, 10)
    assert strong is not None and strong < 0.001
    assert weak is not None and weak > 0.5


class _AwayRedis:
    """Redis restarting: every call fails."""

    async def get(self, key: str) -> Any:
        raise RedisConnectionError("connection refused")

    async def hset(self, *args: Any) -> Any:
        raise RedisConnectionError("connection refused")

    async def set(self, *args: Any) -> Any:
        raise RedisConnectionError("connection refused")

    async def lrange(self, *args: Any) -> Any:
        raise RedisConnectionError("connection refused")

    def pipeline(self, transaction: bool = True) -> Any:
        raise RedisConnectionError("connection refused")


async def test_redis_away_never_fails_a_chat_request() -> None:
    store = _store(0.0, ["alpha"])
    assert (await store.assign("alpha", "r1")) is not None
    # Redis goes away: the last rollout read keeps serving, answers and ratings go
    # uncounted, and nothing raises into the request.
    store.redis = _AwayRedis()  # type: ignore[assignment]
    store._cached = (0.0, store._cached[1] if store._cached else None)  # past its second
    got = await store.assign("alpha", "r2")
    assert got is not None and got.version == "cand"
    await store.record_answer(got, "alpha", "m1")
    await store.record_rating("alpha", "m1", 1)
    assert await RolloutStore(_AwayRedis()).assign("alpha", "r3") is None  # type: ignore[arg-type]


async def test_redis_away_answers_the_operator_503() -> None:
    store = RolloutStore(_AwayRedis())  # type: ignore[arg-type]
    rollout = Rollout(candidate="c", id="r", baseline=None, started=1)
    for call in (store.active(fresh=True), store.start(rollout), store.history()):
        with pytest.raises(ServiceUnavailable):
            await call
