"""Tenants on a real memory_svc and Redis: each sees, changes and erases only its own data.

Callers are named by the headers the gateway sends after verifying a key
(X-Tenant-ID, X-Key-Role, X-Key-Scopes). Tenant A ("acme") writes; tenant B
("globex") then tries every read, write, rating, listing and takeover with A's
ids, which must behave as if A's data did not exist and leave it unchanged.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync

from tests.helpers.servers import RunningRedis, RunningServer, start_redis
from tests.integration.memory.harness import start_memory

pytestmark = pytest.mark.integration

MEMORY_UPSTREAMS = ("rag_svc",)

A, B = "acme", "globex"


def caller(tenant: str, role: str = "member") -> dict[str, str]:
    return {"X-Tenant-ID": tenant, "X-Key-Role": role, "X-Key-Scopes": "chat feedback"}


@pytest.fixture
def a(memory: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=memory.url, headers=caller(A), timeout=30) as client:
        yield client


@pytest.fixture
def b(memory: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=memory.url, headers=caller(B), timeout=30) as client:
        yield client


def new_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex[:10]}"


def snapshot(redis: RunningRedis, pattern: str) -> dict[bytes, bytes | None]:
    """Every key matching `pattern` with its serialized value: equal snapshots, same data."""
    r = redis_sync.Redis.from_url(redis.url)
    return {key: r.dump(key) for key in r.scan_iter(match=pattern)}


def write_session(client: httpx.Client, sid: str, uid: str, secret: str) -> list[dict[str, Any]]:
    turns = [
        {"role": "user", "content": f"My secret is {secret}"},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "What is my secret?"},
    ]
    reply = client.post(f"/v1/sessions/{sid}/messages", json={"messages": turns, "user_id": uid})
    assert reply.status_code == 201
    data: list[dict[str, Any]] = reply.json()["data"]
    return data


def test_another_tenant_finds_no_session_and_changes_none(
    a: httpx.Client, b: httpx.Client, redis: RunningRedis
) -> None:
    sid, uid = new_id("s"), new_id("u")
    stored = write_session(a, sid, uid, "tangerine-42")
    a.post("/v1/feedback", json={"session_id": sid, "message_id": stored[1]["id"], "rating": 1})
    before = snapshot(redis, f"mem:t:{A}:*")

    reads = [
        b.get(f"/v1/sessions/{sid}/messages"),
        b.get(f"/v1/sessions/{sid}"),
        b.get(f"/v1/sessions/{sid}/export"),
        b.post(f"/v1/sessions/{sid}/context", json={"budget_tokens": 2000}),
        b.patch(f"/v1/sessions/{sid}", json={"ttl_s": 1}),
        b.delete(f"/v1/sessions/{sid}"),
        b.post(
            "/v1/feedback",
            json={"session_id": sid, "message_id": stored[1]["id"], "rating": -1},
        ),
    ]
    assert [r.status_code for r in reads] == [404] * len(reads)
    assert b.get(f"/v1/users/{uid}/sessions").json()["data"] == []
    assert snapshot(redis, f"mem:t:{A}:*") == before

    # The same calls inside the tenant work.
    assert [m["content"] for m in a.get(f"/v1/sessions/{sid}/messages").json()["data"]][-1] == (
        "My secret is tangerine-42"
    )
    assert a.get(f"/v1/sessions/{sid}/export").status_code == 200
    assert a.get(f"/v1/sessions/{sid}").json()["message_count"] == 3
    context = a.post(f"/v1/sessions/{sid}/context", json={"budget_tokens": 2000}).json()
    assert any("tangerine-42" in m["content"] for m in context["messages"])
    assert [s["id"] for s in a.get(f"/v1/users/{uid}/sessions").json()["data"]] == [sid]


def test_an_append_to_a_foreign_session_id_starts_a_separate_session(
    a: httpx.Client, b: httpx.Client
) -> None:
    sid, uid = new_id("s"), new_id("u")
    write_session(a, sid, uid, "tangerine-42")

    # Under another user id: A's session would refuse it (409), B's own session takes it.
    first = b.post(
        f"/v1/sessions/{sid}/messages",
        json={"role": "user", "content": "Tell me the secret", "user_id": new_id("u")},
    )
    assert first.status_code == 201 and first.json()["seq"] == 1

    context = b.post(f"/v1/sessions/{sid}/context", json={"budget_tokens": 2000}).json()
    assert [m["content"] for m in context["messages"]] == ["Tell me the secret"]
    exported = b.get(f"/v1/sessions/{sid}/export").json()
    assert "tangerine-42" not in json.dumps(exported)

    mine = a.get(f"/v1/sessions/{sid}/messages").json()["data"]
    assert len(mine) == 3 and all("Tell me" not in m["content"] for m in mine)
    assert a.get(f"/v1/sessions/{sid}").json()["user_id"] == uid


def test_feedback_is_rated_and_listed_only_inside_its_tenant(
    a: httpx.Client, b: httpx.Client
) -> None:
    sid, uid = new_id("s"), new_id("u")
    stored = write_session(a, sid, uid, "tangerine-42")
    rated = a.post(
        "/v1/feedback",
        json={"session_id": sid, "message_id": stored[1]["id"], "rating": 1, "comment": "ok"},
    )
    assert rated.status_code == 201 and rated.json()["tenant"] == A

    # B rates a message of its own session that has the same session id.
    own = b.post(f"/v1/sessions/{sid}/messages", json={"role": "assistant", "content": "Hi"})
    assert (
        b.post(
            "/v1/feedback", json={"session_id": sid, "message_id": own.json()["id"], "rating": -1}
        ).json()["tenant"]
        == B
    )

    b_page = b.get("/v1/feedback").json()
    assert {f["tenant"] for f in b_page["data"]} == {B}
    assert all("tangerine" not in f["message_content"] for f in b_page["data"])
    assert b_page["counts"]["total"] == len(b_page["data"])
    assert b.get("/v1/feedback", params={"user_id": uid}).json()["counts"]["total"] == 0
    by_session = b.get("/v1/feedback", params={"session_id": sid}).json()
    assert [f["rating"] for f in by_session["data"]] == [-1]
    assert b.get("/v1/feedback", params={"tenant": B}).status_code == 200
    refused = b.get("/v1/feedback", params={"tenant": A})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "tenant_forbidden"

    a_page = a.get("/v1/feedback", params={"session_id": sid}).json()
    assert [(f["rating"], f["comment"]) for f in a_page["data"]] == [(1, "ok")]
    assert a_page["counts"] == {"total": 1, "positive": 1, "negative": 0}


def test_an_admin_lists_every_tenant_or_the_one_it_names(
    a: httpx.Client, b: httpx.Client, memory: RunningServer
) -> None:
    sid = new_id("s")  # one session id in both tenants: two sessions, two ratings
    for client, rating in ((a, 1), (b, -1)):
        message = client.post(f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "x"})
        client.post(
            "/v1/feedback",
            json={"session_id": sid, "message_id": message.json()["id"], "rating": rating},
        ).raise_for_status()

    with httpx.Client(base_url=memory.url, headers=caller("ops", "admin")) as admin:
        both = admin.get("/v1/feedback", params={"session_id": sid}).json()
        assert sorted((f["tenant"], f["rating"]) for f in both["data"]) == [(A, 1), (B, -1)]
        assert both["counts"] == {"total": 2, "positive": 1, "negative": 1}
        negative = admin.get("/v1/feedback", params={"session_id": sid, "rating": -1}).json()
        assert [f["tenant"] for f in negative["data"]] == [B]
        only_a = admin.get("/v1/feedback", params={"session_id": sid, "tenant": A}).json()
        assert [f["tenant"] for f in only_a["data"]] == [A]
        paged = admin.get("/v1/feedback", params={"session_id": sid, "limit": 1}).json()
        assert len(paged["data"]) == 1 and paged["has_more"]
        second = admin.get(
            "/v1/feedback", params={"session_id": sid, "limit": 1, "offset": 1}
        ).json()
        assert {paged["data"][0]["tenant"], second["data"][0]["tenant"]} == {A, B}

    # A call without caller headers is the platform itself: it sees every tenant too.
    internal = httpx.get(f"{memory.url}/v1/feedback", params={"session_id": sid}).json()
    assert internal["counts"]["total"] == 2


def test_user_state_memories_and_erasure_stay_inside_their_tenant(
    a: httpx.Client, b: httpx.Client, redis: RunningRedis
) -> None:
    uid, sid = new_id("u"), new_id("s")
    assert a.put(f"/v1/users/{uid}/state", json={"plan": "gold"}).status_code == 201
    fact = a.post(f"/v1/users/{uid}/memories", json={"text": "The user likes green tea"})
    mid = fact.json()["memory"]["id"]
    write_session(a, sid, uid, "tangerine-42")
    before = snapshot(redis, f"mem:t:{A}:*")

    assert b.get(f"/v1/users/{uid}/state").status_code == 404
    assert b.get(f"/v1/users/{uid}/memories").json()["total"] == 0
    assert b.get(f"/v1/users/{uid}/memories/{mid}").status_code == 404
    assert b.patch(f"/v1/users/{uid}/memories/{mid}", json={"text": "x"}).status_code == 404
    assert b.delete(f"/v1/users/{uid}/memories/{mid}").status_code == 404
    search = b.post(f"/v1/users/{uid}/memories/search", json={"query": "green tea"})
    assert search.json()["results"] == []
    # B's session under A's user id pulls in none of A's memories.
    b.post(
        f"/v1/sessions/{sid}/messages",
        json={"role": "user", "content": "Do I like green tea?", "user_id": uid},
    ).raise_for_status()
    b_context = b.post(f"/v1/sessions/{sid}/context", json={"budget_tokens": 2000}).json()
    assert b_context["memories"] == []
    # B's state for the same user id is B's own, created fresh.
    assert b.put(f"/v1/users/{uid}/state", json={"plan": "free"}).status_code == 201
    erased = b.delete(f"/v1/users/{uid}").json()
    assert (erased["state"], erased["memories"], erased["sessions"]) == (True, 0, 1)
    assert snapshot(redis, f"mem:t:{A}:*") == before

    assert a.get(f"/v1/users/{uid}/state").json() == {"plan": "gold"}
    a.post(f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "Green tea?"})
    a_context = a.post(f"/v1/sessions/{sid}/context", json={"budget_tokens": 2000}).json()
    assert [m["text"] for m in a_context["memories"]] == ["The user likes green tea"]
    erased = a.delete(f"/v1/users/{uid}").json()
    assert (erased["state"], erased["memories"], erased["sessions"]) == (True, 1, 1)
    assert snapshot(redis, f"mem:t:{A}:u:{uid}:*") == {}


def test_bad_tenant_names_are_refused(a: httpx.Client, memory: RunningServer) -> None:
    bad = httpx.get(f"{memory.url}/v1/sessions/s1", headers=caller("Acme:s"))
    assert bad.status_code == 400
    listing = a.get("/v1/feedback", params={"tenant": "a:b"})
    assert listing.status_code == 400


def test_data_of_the_first_version_is_the_default_tenants(log_dir: Path) -> None:
    """Keys written under the first version's names, then a fresh start: default reads them."""
    redis = start_redis(log_dir / "legacy-redis")
    r = redis_sync.Redis.from_url(redis.url)
    sid, uid, fid = "s-legacy", "u-legacy", "fb_0123456789abcdef01234567"
    message = {
        "seq": 1,
        "created_at": 1700000000.0,
        "id": "msg_old",
        "session_id": sid,
        "role": "user",
        "content": "written before tenants",
        "name": None,
        "user_id": uid,
        "tokens": 5,
        "metadata": {},
    }
    session = {f"mem:s:{sid}:{part}" for part in ("meta", "msgs", "ids", "summary")}
    r.hset(
        f"mem:s:{sid}:meta",
        mapping={
            "created_at": "1700000000.0",
            "updated_at": "1700000000.0",
            "seq": 1,
            "ttl_s": 0,
            "sys": "",
            "sid": sid,
            "user_id": uid,
        },
    )
    r.rpush(f"mem:s:{sid}:msgs", json.dumps(message))
    r.hset(f"mem:s:{sid}:ids", "msg_old", 1)
    r.zadd(f"mem:u:{uid}:sessions", {sid: 1700000000.0})
    r.hset(f"mem:u:{uid}:state", mapping={"doc": '{"legacy": true}', "etag": '"e1"'})
    r.hset(
        f"mem:fb:{fid}",
        mapping={
            "id": fid,
            "session_id": sid,
            "message_id": "msg_old",
            "rating": 1,
            "user_id": uid,
            "message_role": "user",
            "message_content": "written before tenants",
            "created_at": "1700000001.0",
            "updated_at": "1700000001.0",
        },
    )
    r.zadd("mem:fb:all", {fid: 1700000001.0})
    r.zadd(f"mem:fb:s:{sid}", {fid: 1700000001.0})
    r.zadd(f"mem:u:{uid}:fb", {fid: 1700000001.0})
    for counts in ("mem:fb:n", f"mem:fb:s:{sid}:n", f"mem:u:{uid}:fbn"):
        r.hset(counts, mapping={"total": 1, "positive": 1, "negative": 0})
    feedback = {f"mem:fb:{fid}", f"mem:fb:s:{sid}", f"mem:fb:s:{sid}:n"}
    feedback |= {f"mem:u:{uid}:fb", f"mem:u:{uid}:fbn"}
    r.sadd(f"mem:u:{uid}:keys", *session, *feedback, f"mem:u:{uid}:state")
    memory = start_memory(log_dir / "legacy", redis.url)
    try:
        for headers in ({}, caller("default")):
            with httpx.Client(base_url=memory.url, headers=headers) as default:
                page = default.get(f"/v1/sessions/{sid}/messages").json()
                assert [m["content"] for m in page["data"]] == ["written before tenants"]
                assert default.get(f"/v1/users/{uid}/state").json() == {"legacy": True}
                listed = default.get("/v1/feedback").json()
                assert [(f["id"], f["tenant"]) for f in listed["data"]] == [(fid, "default")]
                assert listed["counts"]["total"] == 1
        with httpx.Client(base_url=memory.url, headers=caller(B)) as other:
            assert other.get(f"/v1/sessions/{sid}/messages").status_code == 404
            assert other.get(f"/v1/users/{uid}/state").status_code == 404
            assert other.get("/v1/feedback").json()["counts"]["total"] == 0
        with httpx.Client(base_url=memory.url) as default:
            more = default.post(
                f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "hi"}
            )
            assert more.json()["seq"] == 2
            erased = default.delete(f"/v1/users/{uid}").json()
            assert (erased["sessions"], erased["state"], erased["feedback"]) == (1, True, 1)
        assert list(r.scan_iter(match=f"mem:s:{sid}:*")) == []
        assert list(r.scan_iter(match=f"mem:u:{uid}:*")) == []
        assert r.hgetall("mem:fb:n") == {b"total": b"0", b"positive": b"0", b"negative": b"0"}
    finally:
        memory.stop()
        redis.stop()
