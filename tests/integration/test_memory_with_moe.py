"""Context assembly with the real core model: moe_svc counts the tokens and summarises.

moe_svc serves the default model from `./var/models` (built there on first use, as
`make up` does), so the summary is SmolLM2's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import (
    REPO_ROOT,
    RunningServer,
    start_redis,
    start_service,
    wait_ready,
)
from tests.integration.memory.harness import start_memory

pytestmark = pytest.mark.integration

TURNS = [
    ("I am planning a trip to Japan in April.", "April is cherry blossom season in Japan."),
    ("I want to visit Kyoto and Osaka.", "Kyoto has temples; Osaka is known for food."),
    ("My budget is about 2000 dollars.", "That covers two weeks if you travel by rail."),
    ("I am vegetarian.", "Kyoto has many Buddhist vegetarian restaurants."),
]


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    log_dir: Path = tmp_path_factory.mktemp("memory_moe")
    redis = start_redis(log_dir / "redis")
    moe = start_service("moe_svc", log_dir, env={"MOE_DATA_DIR": str(REPO_ROOT / "var")})
    try:
        wait_ready(moe, timeout_s=600)  # first run: the default model's build (~1 min)
        # The summary's wait is raised from 30 s: the check is on the summary the model
        # writes, and on a busy 2-core runner writing it can take longer.
        server = start_memory(
            log_dir, redis.url, moe_url=moe.url, env={"MEMORY_SUMMARY_TIMEOUT_S": "180"}
        )
        yield server
        server.stop()
    finally:
        moe.stop()
        redis.stop()


def test_old_turns_are_summarised_by_the_core_model_within_budget(memory: RunningServer) -> None:
    sid = "s-japan-trip"
    with httpx.Client(base_url=memory.url, timeout=60) as client:
        client.post(
            f"/v1/sessions/{sid}/messages",
            json={"role": "system", "content": "You are a travel assistant."},
        ).raise_for_status()
        for question, answer in TURNS:
            client.post(
                f"/v1/sessions/{sid}/messages",
                json={
                    "messages": [
                        {"role": "user", "content": question},
                        # Long answers: the early turns cannot all fit the budget.
                        {"role": "assistant", "content": f"{answer} " * 4},
                    ]
                },
            ).raise_for_status()
        client.post(
            f"/v1/sessions/{sid}/messages",
            json={"role": "user", "content": "Which city should I see first?"},
        ).raise_for_status()

        reply = client.post(f"/v1/sessions/{sid}/context", json={"budget_tokens": 240}, timeout=300)

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["token_counter"] == "moe_svc"
    assert body["total_tokens"] <= 240
    assert body["messages"][0]["content"] == "You are a travel assistant."
    assert body["messages"][-1]["content"] == "Which city should I see first?"
    summary = body["summary"]
    assert summary is not None, {k: body[k] for k in ("dropped", "warnings", "recent_messages")}
    assert summary is not None and summary["status"] == "refreshed"
    assert len(summary["text"].split()) >= 3  # the model wrote something, not an empty string
    assert body["recent_messages"] < len(TURNS) * 2 + 1


def test_the_core_model_extracts_facts_under_the_json_schema(memory: RunningServer) -> None:
    # store=False: this stack has no embedder; storing is covered with the fakes.
    with httpx.Client(base_url=memory.url, timeout=300) as client:
        stated = client.post(
            "/v1/users/u-maria/memories/extract",
            json={"texts": ["Hi, I'm Maria and I work as a nurse in Porto."], "store": False},
        )
        question = client.post(
            "/v1/users/u-maria/memories/extract",
            json={"texts": ["What is the capital of Angola?"], "store": False},
        )
    assert stated.status_code == 200, stated.text
    body = stated.json()
    # The reply was read under the schema (an unreadable one answers 503), and what the
    # model kept is among the message's own statements: nothing invented.
    assert body["model"] and body["stored"] == []
    offered = {"The user is Maria.", "The user works as a nurse in Porto."}
    assert body["facts"] and set(body["facts"]) <= offered and set(body["dropped"]) <= offered
    assert question.json() == {"facts": [], "stored": [], "dropped": [], "model": None}


def test_a_conversation_longer_than_the_models_window_is_summarised_first_turn_included(
    memory: RunningServer,
) -> None:
    """60 turns after a personal fact: the dropped part (~3,300 tokens) is more than the
    core model's 2,048-token window, so it is folded into the summary in several calls,
    and what the user said of themselves in the first turn is still in it."""
    sid = "s-long-journey"
    filler = (
        "Tell me more about planning a long train journey across Europe, with the stops, "
        "the tickets, the luggage and what to see in each city along the way. "
    ) * 2
    turns = [{"role": "user", "content": "My dog is called Pixel and she is a beagle."}]
    turns += [{"role": "assistant" if i % 2 == 0 else "user", "content": filler} for i in range(60)]
    turns.append({"role": "user", "content": "What is my dog called?"})
    with httpx.Client(base_url=memory.url, timeout=60) as client:
        written = 0
        for start in range(0, len(turns), 50):
            appended = client.post(
                f"/v1/sessions/{sid}/messages", json={"messages": turns[start : start + 50]}
            )
            appended.raise_for_status()
            written += sum(m["tokens"] for m in appended.json()["data"])
        reply = client.post(
            f"/v1/sessions/{sid}/context", json={"budget_tokens": 1024}, timeout=300
        )

    assert written > 4000
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["total_tokens"] <= 1024
    summary = body["summary"]
    assert summary is not None, body["warnings"]
    assert summary["upto_seq"] > 40 and body["dropped"] == 0, body
    assert "The user's dog is called Pixel" in summary["text"]
