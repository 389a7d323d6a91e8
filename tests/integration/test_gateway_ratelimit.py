"""The sliding-window limiter and the key store against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import cast

import pytest
import redis.asyncio as aioredis

from gateway.keys import KeyStore
from gateway.ratelimit import Limit, RateLimiter
from tests.helpers.servers import RunningRedis, start_redis


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRedis]:
    running = start_redis(Path(tmp_path_factory.mktemp("rl_redis")))
    yield running
    running.stop()


@pytest.fixture
async def redis(server: RunningRedis) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(server.url)
    await client.flushdb()
    yield client
    await client.aclose()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_the_window_slides(redis: aioredis.Redis) -> None:
    clock = Clock(600.0)  # the start of a window
    limiter = RateLimiter(redis, clock)
    for _ in range(4):
        assert (await limiter.hit("req", "k", 4, 1)).allowed
    refused = await limiter.hit("req", "k", 4, 1)
    assert not refused.allowed
    assert refused.retry_after_s == 60 + 15  # next window, after a quarter of it
    clock.now += 60 + 14  # the previous window still weighs more than 3/4
    assert not (await limiter.hit("req", "k", 4, 1)).allowed
    clock.now += 2
    decision = await limiter.hit("req", "k", 4, 1)
    assert decision.allowed
    assert decision.remaining == 0


async def test_subjects_and_kinds_are_separate(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, Clock(0.0))
    assert (await limiter.hit("tok", "a", 100, 100)).allowed
    assert not (await limiter.hit("tok", "a", 100, 1)).allowed
    assert (await limiter.hit("tok", "b", 100, 1)).allowed
    assert (await limiter.hit("req", "a", 100, 1)).allowed


async def test_charges_after_the_answer_never_refuse(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, Clock(0.0))
    assert (await limiter.hit("tok", "a", 10, 500, charge_only=True)).allowed
    assert not (await limiter.hit("tok", "a", 10, 1)).allowed


async def test_zero_means_unlimited(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, Clock(0.0))
    for _ in range(5):
        assert (await limiter.hit("req", "a", 0, 1000)).allowed


async def test_keys_are_stored_hashed(redis: aioredis.Redis) -> None:
    store = KeyStore(redis)
    key, record = await store.create("ci", rpm_limit=5)
    # The client does not decode replies: keys and values come back as bytes.
    keys = cast(list[bytes], await redis.keys("gateway:key:*"))
    dump = b"".join([k + b"".join(cast(list[bytes], await redis.hvals(k))) for k in keys])
    assert key.encode() not in dump
    found = await store.lookup(key)
    assert found is not None and found.id == record.id and found.rpm_limit == 5
    assert await store.lookup(key + "x") is None
    assert await store.revoke(record.id)
    revoked = await store.lookup(key)
    assert revoked is not None and revoked.revoked
    assert not await store.revoke("nope")


async def test_a_refused_call_charges_nothing(redis: aioredis.Redis) -> None:
    limiter = RateLimiter(redis, Clock(0.0))
    allowed, (requests, tokens) = await limiter.check(
        "a", [Limit("req", 1, 1), Limit("tok", 10, 20)]
    )
    assert not allowed
    assert requests.allowed and not tokens.allowed
    assert tokens.retry_after_s == 60
    # The refused call did not use the one request a minute.
    assert (await limiter.hit("req", "a", 1, 1)).allowed
