"""Long-term memory on a real Redis, with the fake embeddings of `memory_fakes`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import RunningRedis, RunningServer
from tests.integration.memory.harness import start_memory

pytestmark = pytest.mark.integration

MEMORY_UPSTREAMS = ("rag_svc",)


@pytest.fixture(scope="module")
def no_rag(log_dir: Path, redis: RunningRedis) -> Iterator[RunningServer]:
    server = start_memory(log_dir / "no_rag", redis.url)
    yield server
    server.stop()


@pytest.fixture
def uid() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def add(url: str, uid: str, text: str, **metadata: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/users/{uid}/memories", json={"text": text, "metadata": metadata})


def test_near_duplicates_merge_instead_of_being_stored_twice(
    memory: RunningServer, uid: str
) -> None:
    first = add(memory.url, uid, "The user lives in Paris")
    assert first.status_code == 201 and first.json()["event"] == "added"
    mid = first.json()["memory"]["id"]

    same = add(memory.url, uid, "the user lives in Paris!")
    assert same.status_code == 200
    assert same.json()["event"] == "unchanged" and same.json()["memory"]["id"] == mid
    assert same.json()["memory"]["mentions"] == 2

    detailed = add(memory.url, uid, "The user lives in Paris France", source="chat")
    body = detailed.json()
    assert body["event"] == "merged" and body["memory"]["id"] == mid
    assert body["memory"]["text"] == "The user lives in Paris France"  # the more detailed wording
    assert body["memory"]["metadata"] == {"source": "chat"}
    assert body["similarity"] >= 0.9

    other = add(memory.url, uid, "The user plays the cello on weekends")
    assert other.status_code == 201 and other.json()["event"] == "added"
    listed = httpx.get(f"{memory.url}/v1/users/{uid}/memories").json()
    assert listed["total"] == 2
    assert [m["text"] for m in listed["data"]] == [
        "The user plays the cello on weekends",
        "The user lives in Paris France",
    ]


async def test_concurrent_adds_of_one_fact_store_it_once(memory: RunningServer, uid: str) -> None:
    async with httpx.AsyncClient(base_url=memory.url, timeout=30) as http:
        replies = await asyncio.gather(
            *(
                http.post(
                    f"/v1/users/{uid}/memories", json={"text": "The user is allergic to nuts"}
                )
                for _ in range(12)
            )
        )
        listed = (await http.get(f"/v1/users/{uid}/memories")).json()
    events = sorted(r.json()["event"] for r in replies)
    assert events == ["added"] + ["unchanged"] * 11
    assert listed["total"] == 1 and listed["data"][0]["mentions"] == 12


def test_search_update_and_delete(memory: RunningServer, uid: str) -> None:
    home = add(memory.url, uid, "The user lives in Lisbon near the river").json()["memory"]
    add(memory.url, uid, "The user drinks green tea every morning")
    add(memory.url, uid, "The user has two cats named Ada and Bob")
    search = f"{memory.url}/v1/users/{uid}/memories/search"

    found = httpx.post(search, json={"query": "where does the user live", "k": 1}).json()
    assert [r["text"] for r in found["results"]] == ["The user lives in Lisbon near the river"]
    ranked = httpx.post(search, json={"query": "what drinks does the user like", "k": 3}).json()
    assert ranked["results"][0]["text"] == "The user drinks green tea every morning"
    scores = [r["score"] for r in ranked["results"]]
    assert scores == sorted(scores, reverse=True)
    assert httpx.post(search, json={"query": "cats", "min_score": 0.99}).json()["results"] == []

    item = f"{memory.url}/v1/users/{uid}/memories/{home['id']}"
    updated = httpx.patch(item, json={"text": "The user moved to Porto by the sea"})
    assert (
        updated.status_code == 200
        and updated.json()["text"] == "The user moved to Porto by the sea"
    )
    assert updated.json()["created_at"] == home["created_at"]
    moved = httpx.post(search, json={"query": "Porto sea", "k": 1}).json()["results"]
    assert moved[0]["id"] == home["id"]

    assert httpx.delete(item).json() == {"id": home["id"], "deleted": True, "messages": None}
    assert httpx.get(item).status_code == 404
    assert httpx.delete(item).status_code == 404
    assert httpx.get(f"{memory.url}/v1/users/{uid}/memories").json()["total"] == 2


def test_bad_memory_input_is_refused(memory: RunningServer, uid: str) -> None:
    assert add(memory.url, uid, "").status_code == 400
    search = f"{memory.url}/v1/users/{uid}/memories/search"
    assert httpx.post(search, json={"query": "x", "k": 0}).json()["error"]["param"] == "k"
    empty = httpx.patch(f"{memory.url}/v1/users/{uid}/memories/mem_x", json={})
    assert empty.json()["error"]["code"] == "empty_update"
    assert httpx.get(f"{memory.url}/v1/users/{uid}/memories").json()["total"] == 0


def test_without_embeddings_memory_answers_503_naming_rag_and_the_rest_works(
    memory: RunningServer, no_rag: RunningServer, uid: str
) -> None:
    kept = add(memory.url, uid, "The user speaks Portuguese").json()["memory"]

    refused = add(no_rag.url, uid, "The user speaks Spanish")
    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["code"] == "embeddings_unavailable" and "rag_svc" in error["message"]
    search = httpx.post(f"{no_rag.url}/v1/users/{uid}/memories/search", json={"query": "language"})
    assert search.status_code == 503 and "rag_svc" in search.json()["error"]["message"]

    listed = httpx.get(f"{no_rag.url}/v1/users/{uid}/memories").json()
    assert [m["text"] for m in listed["data"]] == ["The user speaks Portuguese"]
    assert httpx.get(f"{no_rag.url}/v1/users/{uid}/memories/{kept['id']}").status_code == 200
    appended = httpx.post(
        f"{no_rag.url}/v1/sessions/s-{uid}/messages", json={"role": "user", "content": "hi"}
    )
    assert appended.status_code == 201
    state = httpx.put(f"{no_rag.url}/v1/users/{uid}/state", json={"lang": "pt"})
    assert state.status_code == 201
    assert httpx.delete(f"{no_rag.url}/v1/users/{uid}/memories/{kept['id']}").status_code == 200
