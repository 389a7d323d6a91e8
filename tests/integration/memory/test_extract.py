"""Facts extracted from what a user wrote and stored as memories, on a real Redis.

The model is the fake of `memory_fakes` (it answers the facts' JSON schema with one
fact a sentence, a repeat and an invented fact); the real model's run is in
tests/integration/test_memory_with_moe.py.
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.helpers.servers import RunningServer

pytestmark = pytest.mark.integration

MEMORY_UPSTREAMS = ("rag_svc", "moe_svc")


@pytest.fixture
def uid() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def extract(url: str, uid: str, *texts: str, **extra: object) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/users/{uid}/memories/extract", json={"texts": list(texts), **extra}, timeout=30
    )


def chat_calls(fakes: RunningServer) -> int:
    return int(httpx.get(f"{fakes.url}/calls").json().get("chat", 0))


def test_facts_are_checked_then_stored_once(memory: RunningServer, uid: str) -> None:
    reply = extract(
        memory.url, uid, "I am a nurse in Porto. I have two cats.", metadata={"source": "chat"}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    # The default form: the message's statements, in the third person, as the model chose.
    assert body["facts"] == ["The user is a nurse in Porto.", "The user has two cats."]
    # The repeat and the fact with nothing from the text were not stored.
    assert body["dropped"] == ["The user is a nurse in Porto.", "The user owns a yacht."]
    assert body["model"] == "fake-moe"
    assert [s["event"] for s in body["stored"]] == ["added", "added"]
    listed = httpx.get(f"{memory.url}/v1/users/{uid}/memories").json()
    assert sorted(m["text"] for m in listed["data"]) == sorted(body["facts"])
    assert all(m["metadata"] == {"source": "chat"} for m in listed["data"])

    again = extract(memory.url, uid, "I am a nurse in Porto. I have two cats.").json()
    assert [s["event"] for s in again["stored"]] == ["unchanged", "unchanged"]
    assert httpx.get(f"{memory.url}/v1/users/{uid}/memories").json()["total"] == 2


def test_a_preview_stores_nothing(memory: RunningServer, uid: str) -> None:
    body = extract(memory.url, uid, "My daughter is five.", store=False).json()
    assert body["facts"] == ["The user's daughter is five."] and body["stored"] == []
    assert httpx.get(f"{memory.url}/v1/users/{uid}/memories").json()["total"] == 0


def test_questions_about_the_world_are_not_sent_to_the_model(
    memory: RunningServer, fakes: RunningServer, uid: str
) -> None:
    before = chat_calls(fakes)
    body = extract(memory.url, uid, "What is the capital of Angola?", "Write a poem.").json()
    assert body == {"facts": [], "stored": [], "dropped": [], "model": None}
    assert chat_calls(fakes) == before


def test_bad_requests_are_refused_in_the_shared_shape(memory: RunningServer, uid: str) -> None:
    payloads: list[dict[str, object]] = [
        {"texts": []},
        {"texts": [""]},
        {"texts": ["x" * 4001]},
        {},
    ]
    for payload in payloads:
        reply = httpx.post(f"{memory.url}/v1/users/{uid}/memories/extract", json=payload)
        assert reply.status_code == 400, payload
        assert reply.json()["error"]["type"] == "invalid_request_error"


def test_without_the_model_the_call_says_so_and_keeps_what_is_stored(
    alone: RunningServer, uid: str
) -> None:
    # `alone` reaches neither moe_svc nor rag_svc: nothing can be extracted or added.
    reply = extract(alone.url, uid, "I am allergic to peanuts.")
    assert reply.status_code == 503
    error = reply.json()["error"]
    assert error["code"] == "extraction_unavailable"
    assert "POST /memories" in error["message"]
