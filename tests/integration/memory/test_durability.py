"""Erasure, Redis restarts and outages, with real redis-server processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_sync

from memory_svc.redis_conn import decode
from tests.helpers.servers import RunningRedis, RunningServer, start_redis
from tests.integration.memory.harness import start_memory

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path, fakes: RunningServer) -> Iterator[tuple[RunningRedis, RunningServer]]:
    redis = start_redis(tmp_path / "redis")
    memory = start_memory(
        tmp_path,
        redis.url,
        rag_url=fakes.url,
        moe_url=fakes.url,
        env={"MEMORY_REDIS_TIMEOUT_S": "1"},
    )
    yield redis, memory
    memory.stop()
    redis.stop()


def populate(client: httpx.Client, uid: str, marker: str) -> None:
    """Every kind of data a user leaves: sessions, summary, memories, state, feedback."""
    for n in range(2):
        sid = f"s-{marker}-{n}"
        messages = [
            {"role": "user" if i % 2 == 0 else "assistant", "content": f"{marker} turn {i} " * 10}
            for i in range(12)
        ]
        stored = client.post(
            f"/v1/sessions/{sid}/messages", json={"messages": messages, "user_id": uid}
        ).json()["data"]
        context = client.post(f"/v1/sessions/{sid}/context", json={"budget_tokens": 300}).json()
        assert context["summary"] is not None
        client.post(
            "/v1/feedback",
            json={"session_id": sid, "message_id": stored[1]["id"], "rating": 1, "comment": marker},
        ).raise_for_status()
    for fact in (f"{marker} likes tea", f"{marker} lives in Oslo"):
        client.post(f"/v1/users/{uid}/memories", json={"text": fact}).raise_for_status()
    client.put(f"/v1/users/{uid}/state", json={"marker": marker}).raise_for_status()


def _value(r: redis_sync.Redis, key: bytes) -> object:
    kind = decode(r.type(key))
    if kind == "string":
        return r.get(key)
    if kind == "list":
        return r.lrange(key, 0, -1)
    if kind == "hash":
        return r.hgetall(key)
    if kind == "set":
        return r.smembers(key)
    return r.zrange(key, 0, -1, withscores=True)


def dump(r: redis_sync.Redis) -> dict[str, str]:
    """Every key and its whole value as text, found with SCAN."""
    return {key.decode(): repr(_value(r, key)) for key in r.scan_iter(match="*", count=100)}


def test_erasure_removes_every_key_of_the_user_and_nothing_else(
    stack: tuple[RunningRedis, RunningServer],
) -> None:
    redis, memory = stack
    uid, other = f"u-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    marker, other_marker = "ZEBRA", "OTTER"
    r = redis_sync.Redis.from_url(redis.url)
    with httpx.Client(base_url=memory.url, timeout=30) as client:
        populate(client, other, other_marker)
        kept = dump(r)
        populate(client, uid, marker)
        assert any(marker in v for v in dump(r).values())

        report = client.delete(f"/v1/users/{uid}").json()
        assert report["user_id"] == uid
        assert report["sessions"] == 2 and report["messages"] == 24
        assert report["memories"] == 2 and report["state"] is True and report["feedback"] == 2
        assert report["keys_deleted"] >= 10

        after = dump(r)
        leftovers = {k: v for k, v in after.items() if uid in k or uid in v or marker in k + v}
        assert leftovers == {}
        # Redis is as it was before the user came: the other user's data is untouched
        # and the global feedback index and counts are theirs alone again.
        assert after == kept
        assert client.get("/v1/feedback").json()["counts"]["total"] == 2
        assert client.get(f"/v1/users/{uid}/state").status_code == 404
        again = client.delete(f"/v1/users/{uid}").json()
        assert again["keys_deleted"] == 0 and again["sessions"] == 0


async def _write_until(
    url: str, sid: str, stop: asyncio.Event, acked: list[str], writer: int
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        i = 0
        while not stop.is_set():
            mid = f"w{writer}-{i}"
            reply = await http.post(
                f"/v1/sessions/{sid}/messages", json={"role": "user", "content": mid, "id": mid}
            )
            if reply.status_code in (200, 201):
                acked.append(mid)
                i += 1
            else:
                assert reply.status_code == 503, reply.text
                await asyncio.sleep(0.05)


async def _until(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out waiting for the writers")


def _wait_ready(url: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{url}/readyz").status_code != 200:
        assert time.monotonic() < deadline, "memory_svc did not recover after Redis returned"
        time.sleep(0.1)


def _stored_ids(url: str, sid: str) -> list[str]:
    return [m["id"] for m in httpx.get(f"{url}/v1/sessions/{sid}/export").json()["messages"]]


async def test_a_redis_restart_under_load_loses_no_acknowledged_write(
    stack: tuple[RunningRedis, RunningServer],
) -> None:
    redis, memory = stack
    sid, stop = f"s-{uuid.uuid4().hex[:8]}", asyncio.Event()
    acked: list[str] = []
    writers = [asyncio.create_task(_write_until(memory.url, sid, stop, acked, w)) for w in range(8)]
    await _until(lambda: len(acked) >= 150)
    await asyncio.to_thread(redis.stop)  # SIGTERM while the writers keep writing
    at_stop = len(acked)
    restarted = await asyncio.to_thread(start_redis, redis.data_dir, port=redis.port)
    try:
        await asyncio.to_thread(_wait_ready, memory.url)
        target = len(acked) + 100
        await _until(lambda: len(acked) >= target)  # it takes writes again by itself
        stop.set()
        await asyncio.gather(*writers)
        stored = await asyncio.to_thread(_stored_ids, memory.url, sid)
    finally:
        restarted.stop()
    assert at_stop >= 150
    assert set(acked) <= set(stored)
    assert len(stored) == len(set(stored))  # retried appends were not stored twice
    for w in range(8):
        mine = [mid for mid in stored if mid.startswith(f"w{w}-")]
        assert mine == sorted(mine, key=lambda m: int(m.split("-")[1]))


def test_a_killed_redis_replays_its_append_only_file(
    stack: tuple[RunningRedis, RunningServer],
) -> None:
    redis, memory = stack
    sid, uid = f"s-{uuid.uuid4().hex[:8]}", f"u-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=memory.url, timeout=10) as client:
        for i in range(50):
            client.post(f"/v1/sessions/{sid}/messages", json={"role": "user", "content": f"{i}"})
        etag = client.put(f"/v1/users/{uid}/state", json={"v": 1}).headers["etag"]
        # appendfsync everysec: what was acknowledged is on disk within about a second.
        time.sleep(2.5)
        os.kill(redis.process.pid, signal.SIGKILL)
        redis.process.wait()
        restarted = start_redis(redis.data_dir, port=redis.port)
        try:
            _wait_ready(memory.url)
            assert [
                m["content"] for m in client.get(f"/v1/sessions/{sid}/export").json()["messages"]
            ] == [str(i) for i in range(50)]
            state = client.get(f"/v1/users/{uid}/state")
            assert state.json() == {"v": 1} and state.headers["etag"] == etag
        finally:
            restarted.stop()


def test_redis_down_gives_503_in_time_then_the_service_recovers_by_itself(
    stack: tuple[RunningRedis, RunningServer],
) -> None:
    redis, memory = stack
    sid = f"s-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=memory.url, timeout=30) as client:
        client.post(f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "before"})
        redis.stop()
        calls: list[Callable[[], httpx.Response]] = [
            lambda: client.post(
                f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "x"}
            ),
            lambda: client.get(f"/v1/sessions/{sid}/messages"),
            lambda: client.get("/v1/users/someone/state"),
            lambda: client.post(f"/v1/sessions/{sid}/context", json={"budget_tokens": 100}),
        ]
        for call in calls:
            started = time.monotonic()
            reply = call()
            assert time.monotonic() - started < 5  # generous: the Redis timeout is 1 s
            assert reply.status_code == 503
            error = reply.json()["error"]
            assert error["code"] == "redis_unavailable" and error["service"] == "memory_svc"
            assert error["request_id"] == reply.headers["x-request-id"]
        readyz = client.get("/readyz")
        assert readyz.status_code == 503 and readyz.json()["checks"]["redis"]["status"] == "down"

        restarted = start_redis(redis.data_dir, port=redis.port)
        try:
            _wait_ready(memory.url)
            after = client.post(
                f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "after"}
            )
            assert after.status_code == 201 and after.json()["seq"] == 2
        finally:
            restarted.stop()


def test_a_hung_redis_gives_503_within_the_timeout(
    stack: tuple[RunningRedis, RunningServer],
) -> None:
    redis, memory = stack
    with httpx.Client(base_url=memory.url, timeout=30) as client:
        client.put("/v1/users/hung/state", json={"a": 1}).raise_for_status()
        os.kill(redis.process.pid, signal.SIGSTOP)  # accepts connections, never answers
        try:
            started = time.monotonic()
            reply = client.get("/v1/users/hung/state")
            elapsed = time.monotonic() - started
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "redis_unavailable"
        assert 0.5 < elapsed < 5
        assert client.get("/v1/users/hung/state").json() == {"a": 1}
