"""Context assembly on a real Redis, with fake moe_svc (summaries, tokenize) and rag_svc."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from tokenizers import Tokenizer

from memory_svc.tokens import GENERATION_PROMPT, render_message
from tests.helpers.servers import RunningServer
from tests.integration.memory.harness import shared_tokenizer

pytestmark = pytest.mark.integration

MEMORY_UPSTREAMS = ("rag_svc", "moe_svc")


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(shared_tokenizer()))


def count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def conversation(url: str, turns: int, user_id: str | None = None) -> str:
    sid = f"s-{uuid.uuid4().hex[:12]}"
    with httpx.Client(base_url=url, timeout=30) as client:
        first: dict[str, Any] = {"role": "system", "content": "You are a helpful assistant."}
        if user_id:
            first["user_id"] = user_id
        client.post(f"/v1/sessions/{sid}/messages", json=first).raise_for_status()
        for i in range(turns):
            client.post(
                f"/v1/sessions/{sid}/messages",
                json={
                    "messages": [
                        {"role": "user", "content": f"Question {i}: tell me about topic {i} " * 3},
                        {"role": "assistant", "content": f"Topic {i} is interesting because " * 6},
                    ]
                },
            ).raise_for_status()
        client.post(
            f"/v1/sessions/{sid}/messages",
            json={"role": "user", "content": "What is my favourite colour?"},
        ).raise_for_status()
    return sid


def context(url: str, sid: str, budget: int, **extra: Any) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/sessions/{sid}/context", json={"budget_tokens": budget, **extra}, timeout=60
    )


def calls(fakes: RunningServer) -> dict[str, int]:
    counts: dict[str, int] = httpx.get(f"{fakes.url}/calls").json()
    return counts


def test_the_budget_is_never_exceeded_and_the_latest_user_turn_is_always_kept(
    memory: RunningServer, tokenizer: Tokenizer
) -> None:
    sid = conversation(memory.url, turns=12)
    floor = (
        count(tokenizer, render_message("system", "You are a helpful assistant."))
        + count(tokenizer, render_message("user", "What is my favourite colour?"))
        + count(tokenizer, GENERATION_PROMPT)
    )
    too_small = context(memory.url, sid, floor - 1)
    assert too_small.status_code == 400
    assert too_small.json()["error"]["code"] == "budget_too_small"
    assert str(floor) in too_small.json()["error"]["message"]

    for budget in range(floor, floor + 1200, 97):
        reply = context(memory.url, sid, budget)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        prompt = "".join(render_message(m["role"], m["content"]) for m in body["messages"])
        # The total is what the core model's tokenizer makes of the prompt, within budget.
        assert body["total_tokens"] == count(tokenizer, prompt + GENERATION_PROMPT) <= budget
        assert body["messages"][0]["content"] == "You are a helpful assistant."
        assert body["messages"][-1] == {
            "role": "user",
            "content": "What is my favourite colour?",
            "name": None,
        }
        assert body["token_counter"] == "moe_svc"


def test_older_turns_become_a_summary_that_is_cached_and_refreshed_as_the_session_grows(
    memory: RunningServer, fakes: RunningServer
) -> None:
    sid = conversation(memory.url, turns=10)
    before = calls(fakes).get("chat", 0)
    first = context(memory.url, sid, 400).json()
    assert first["summary"]["status"] == "refreshed"
    assert first["summary"]["text"].startswith("FAKE SUMMARY")
    assert first["dropped"] == 0
    assert any(m["content"].startswith("Summary of the earlier") for m in first["messages"])
    assert calls(fakes)["chat"] == before + 1

    again = context(memory.url, sid, 400).json()
    assert again["summary"]["status"] == "cached"
    assert again["summary"]["upto_seq"] == first["summary"]["upto_seq"]
    assert calls(fakes)["chat"] == before + 1  # served from Redis

    with httpx.Client(base_url=memory.url) as client:
        for i in range(3):
            client.post(
                f"/v1/sessions/{sid}/messages",
                json={"role": "assistant", "content": f"More about colours, part {i}. " * 8},
            )
        client.post(f"/v1/sessions/{sid}/messages", json={"role": "user", "content": "And?"})
        exported = client.get(f"/v1/sessions/{sid}/export").json()
    grown = context(memory.url, sid, 400).json()
    assert grown["summary"]["status"] == "refreshed"
    assert grown["summary"]["upto_seq"] > first["summary"]["upto_seq"]
    assert calls(fakes)["chat"] == before + 2
    assert exported["summary"]["upto_seq"] == first["summary"]["upto_seq"]


def test_relevant_long_term_memories_are_added(memory: RunningServer) -> None:
    uid = f"u-{uuid.uuid4().hex[:12]}"
    for fact in ("The user's favourite colour is teal", "The user works as a baker"):
        httpx.post(f"{memory.url}/v1/users/{uid}/memories", json={"text": fact}).raise_for_status()
    sid = conversation(memory.url, turns=2, user_id=uid)
    body = context(memory.url, sid, 2000, max_memories=1).json()
    assert [m["text"] for m in body["memories"]] == ["The user's favourite colour is teal"]
    assert "favourite colour is teal" in body["messages"][1]["content"]
    none = context(memory.url, sid, 2000, max_memories=0).json()
    assert none["memories"] == []


def test_without_moe_and_rag_old_turns_are_dropped_and_the_rest_still_works(
    alone: RunningServer, memory: RunningServer, tokenizer: Tokenizer
) -> None:
    uid = f"u-{uuid.uuid4().hex[:12]}"
    # Stored through the instance that has embeddings; both share the Redis.
    added = httpx.post(f"{memory.url}/v1/users/{uid}/memories", json={"text": "Likes teal"})
    assert added.status_code == 201
    sid = conversation(alone.url, turns=10, user_id=uid)
    reply = context(alone.url, sid, 400)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["summary"] is None
    assert body["dropped"] > 0
    assert body["dropped"] + body["recent_messages"] == 21  # every non-system message
    assert body["token_counter"] == "local"
    warnings = " ".join(body["warnings"])
    assert "moe_svc" in warnings and "rag_svc" in warnings
    prompt = "".join(render_message(m["role"], m["content"]) for m in body["messages"])
    assert body["total_tokens"] == count(tokenizer, prompt + GENERATION_PROMPT) <= 400
