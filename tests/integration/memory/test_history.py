"""memory_svc history against a real Redis: append, read, paginate, list, retain, export."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis as redis_sync

from tests.helpers.servers import RunningRedis, RunningServer

pytestmark = pytest.mark.integration


@pytest.fixture
def client(memory: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=memory.url, timeout=30) as c:
        yield c


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_append_and_read_back_newest_first_in_pages(client: httpx.Client) -> None:
    sid, uid = new_id("s"), new_id("u")
    first = client.post(
        f"/v1/sessions/{sid}/messages",
        json={"role": "system", "content": "Be kind.", "user_id": uid, "metadata": {"k": [1]}},
    )
    assert first.status_code == 201
    body = first.json()
    assert body["seq"] == 1 and body["id"].startswith("msg_") and body["user_id"] == uid
    assert body["metadata"] == {"k": [1]}
    assert body["tokens"] > 3 and body["created_at"] > 1_600_000_000
    for i in range(2, 8):
        role = "user" if i % 2 == 0 else "assistant"
        reply = client.post(f"/v1/sessions/{sid}/messages", json={"role": role, "content": f"m{i}"})
        assert reply.json()["seq"] == i

    page = client.get(f"/v1/sessions/{sid}/messages", params={"limit": 3}).json()
    assert [m["content"] for m in page["data"]] == ["m7", "m6", "m5"]
    assert page["has_more"] is True
    older = client.get(
        f"/v1/sessions/{sid}/messages", params={"limit": 3, "before": page["next_before"]}
    ).json()
    assert [m["seq"] for m in older["data"]] == [4, 3, 2]
    last = client.get(
        f"/v1/sessions/{sid}/messages", params={"limit": 3, "before": older["next_before"]}
    ).json()
    assert [m["seq"] for m in last["data"]] == [1]
    assert last["has_more"] is False and last["next_before"] is None

    info = client.get(f"/v1/sessions/{sid}").json()
    assert info["message_count"] == 7 and info["user_id"] == uid
    assert info["updated_at"] >= info["created_at"]


def test_a_batch_is_stored_in_order_and_a_retried_id_is_not_stored_twice(
    client: httpx.Client,
) -> None:
    sid = new_id("s")
    batch = {
        "messages": [
            {"role": "user", "content": "What is 2+2?", "id": "q1"},
            {"role": "assistant", "content": "4", "id": "a1", "name": "calc"},
        ]
    }
    created = client.post(f"/v1/sessions/{sid}/messages", json=batch)
    assert created.status_code == 201
    assert [(m["seq"], m["id"]) for m in created.json()["data"]] == [(1, "q1"), (2, "a1")]
    retried = client.post(f"/v1/sessions/{sid}/messages", json=batch)
    assert retried.status_code == 200
    assert retried.json() == created.json()
    clash = client.post(
        f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "other", "id": "q1"}
    )
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "message_id_conflict"
    assert client.get(f"/v1/sessions/{sid}").json()["message_count"] == 2


async def test_concurrent_appends_from_many_clients_keep_every_message_in_order(
    memory: RunningServer,
) -> None:
    sid, clients, per_client = new_id("s"), 16, 20

    async def writer(c: int, http: httpx.AsyncClient) -> list[int]:
        seqs = []
        for i in range(per_client):
            reply = await http.post(
                f"/v1/sessions/{sid}/messages", json={"role": "user", "content": f"c{c}-{i}"}
            )
            assert reply.status_code == 201, reply.text
            seqs.append(reply.json()["seq"])
        return seqs

    async with httpx.AsyncClient(base_url=memory.url, timeout=60) as http:
        acked = await asyncio.gather(*(writer(c, http) for c in range(clients)))
        stored = []
        before = None
        while True:
            params = {"limit": 100} | ({"before": before} if before else {})
            page = (await http.get(f"/v1/sessions/{sid}/messages", params=params)).json()
            stored += page["data"]
            before = page["next_before"]
            if not page["has_more"]:
                break
    stored.reverse()
    total = clients * per_client
    assert [m["seq"] for m in stored] == list(range(1, total + 1))
    for c, seqs in enumerate(acked):
        mine = [m for m in stored if m["content"].startswith(f"c{c}-")]
        # Each client's messages are there, in the order it sent them, at the seqs it was told.
        assert [m["content"] for m in mine] == [f"c{c}-{i}" for i in range(per_client)]
        assert [m["seq"] for m in mine] == seqs
    created = [m["created_at"] for m in stored]
    assert created == sorted(created)


def test_sessions_are_listed_per_user_and_expire_after_their_retention(
    client: httpx.Client, redis: RunningRedis
) -> None:
    uid = new_id("u")
    sids = [new_id("s") for _ in range(3)]
    for sid in sids:
        client.post(
            f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "hi", "user_id": uid}
        )
    listed = client.get(f"/v1/users/{uid}/sessions").json()
    assert [s["id"] for s in listed["data"]] == sids[::-1]  # most recently active first

    patched = client.patch(f"/v1/sessions/{sids[0]}", json={"ttl_s": 1})
    assert patched.json()["ttl_s"] == 1
    r = redis_sync.Redis.from_url(redis.url)
    assert 0 < r.ttl(f"mem:s:{sids[0]}:msgs") <= 1
    assert r.ttl(f"mem:s:{sids[1]}:msgs") > 1000  # the default retention (30 days)
    deadline = time.monotonic() + 10
    while client.get(f"/v1/sessions/{sids[0]}").status_code != 404:
        assert time.monotonic() < deadline, "the session did not expire"
        time.sleep(0.2)
    assert client.get(f"/v1/sessions/{sids[0]}/messages").status_code == 404
    assert [s["id"] for s in client.get(f"/v1/users/{uid}/sessions").json()["data"]] == [
        sids[2],
        sids[1],
    ]
    # The expired session's ids are dropped from the user's indexes too.
    assert r.zscore(f"mem:u:{uid}:sessions", sids[0]) is None

    kept = client.patch(f"/v1/sessions/{sids[1]}", json={"ttl_s": 0}).json()
    assert kept["ttl_s"] == 0 and kept["expires_at"] is None
    assert r.ttl(f"mem:s:{sids[1]}:msgs") == -1
    client.post(f"/v1/sessions/{sids[1]}/messages", json={"role": "assistant", "content": "yo"})
    assert r.ttl(f"mem:s:{sids[1]}:msgs") == -1  # an append keeps the session's own retention


def test_export_returns_the_whole_session_as_json(client: httpx.Client) -> None:
    sid = new_id("s")
    for i in range(5):
        client.post(f"/v1/sessions/{sid}/messages", json={"role": "user", "content": f"n{i}"})
    export = client.get(f"/v1/sessions/{sid}/export")
    assert export.status_code == 200
    assert "attachment" in export.headers["content-disposition"]
    body = export.json()
    assert body["session"]["id"] == sid and body["session"]["message_count"] == 5
    assert [m["content"] for m in body["messages"]] == [f"n{i}" for i in range(5)]


def test_delete_removes_a_session(client: httpx.Client, redis: RunningRedis) -> None:
    sid, uid = new_id("s"), new_id("u")
    client.post(
        f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "x", "user_id": uid}
    )
    assert client.delete(f"/v1/sessions/{sid}").json() == {
        "id": sid,
        "deleted": True,
        "messages": 1,
    }
    assert client.get(f"/v1/sessions/{sid}").status_code == 404
    assert client.delete(f"/v1/sessions/{sid}").status_code == 404
    r = redis_sync.Redis.from_url(redis.url)
    assert list(r.scan_iter(match=f"mem:s:{sid}:*")) == []
    assert client.get(f"/v1/users/{uid}/sessions").json()["data"] == []


def _error(reply: httpx.Response, status: int) -> dict[str, str]:
    assert reply.status_code == status, reply.text
    error: dict[str, str] = reply.json()["error"]
    assert error["service"] == "memory_svc" and error["request_id"]
    return error


def test_bad_input_gets_a_clear_4xx_and_changes_nothing(
    client: httpx.Client, redis: RunningRedis
) -> None:
    sid = new_id("s")
    url = f"/v1/sessions/{sid}/messages"
    client.post(url, json={"role": "user", "content": "kept", "user_id": "owner"})
    r = redis_sync.Redis.from_url(redis.url)
    before = r.lrange(f"mem:s:{sid}:msgs", 0, -1)

    assert _error(client.post(url, json={"role": "wizard", "content": "x"}), 400)["param"] == "role"
    assert _error(client.post(url, json={"role": "user"}), 400)["param"] == "content"
    too_big = _error(client.post(url, json={"role": "user", "content": "x" * 32_001}), 413)
    assert too_big["code"] == "message_too_large" and "32000" in too_big["message"]
    batch = {"messages": [{"role": "user", "content": "ok"}, {"role": "nope", "content": "x"}]}
    assert _error(client.post(url, json=batch), 400)["param"] == "messages.1.role"
    malformed = client.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert _error(malformed, 400)["code"] == "invalid_json"
    other_user = client.post(url, json={"role": "user", "content": "x", "user_id": "intruder"})
    assert _error(other_user, 409)["code"] == "session_user_mismatch"
    assert _error(
        client.post("/v1/sessions/bad:id/messages", json={"role": "user", "content": "x"}), 400
    )
    assert r.lrange(f"mem:s:{sid}:msgs", 0, -1) == before
    assert r.hget(f"mem:s:{sid}:meta", "seq") == b"1"

    assert _error(client.get(f"/v1/sessions/{new_id('nope')}/messages"), 404)["param"] == "sid"
    assert _error(client.get(f"/v1/sessions/{new_id('nope')}/export"), 404)
    assert _error(client.patch(f"/v1/sessions/{new_id('nope')}", json={"ttl_s": 5}), 404)
    assert _error(client.get(f"{url}", params={"limit": 0}), 400)["param"] == "limit"
