"""The gateway in front of the real pipeline: router_svc, memory_svc (real Redis), rag_svc,
reasoning_svc and tools_svc as real processes; moe_svc and creative_svc are the scripted
stand-ins of tests/helpers/router_fakes.py. Driven only through the gateway, with the
official `openai` client."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.keys import new_key
from tests.helpers.servers import RunningServer
from tests.integration.pipeline_stack import BELL, PipelineStack, gateway_in_front, pipeline_stack

pytestmark = pytest.mark.integration

# The gateway registers it on start as an admin key with every scope (the reasoning path
# runs python, which only keys with `tools:python` may).
KEY = new_key()
AUTH = {"Authorization": f"Bearer {KEY}"}


@dataclass
class Platform:
    stack: PipelineStack
    gateway: RunningServer

    @property
    def fake(self) -> RunningServer:
        return self.stack.fake

    @property
    def memory(self) -> RunningServer:
        return self.stack.memory

    @property
    def rag(self) -> RunningServer:
        return self.stack.rag


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root: Path = tmp_path_factory.mktemp("gateway_pipeline")
    with pipeline_stack(root) as stack:
        env = {"GATEWAY_LOG_JSON": "false", "GATEWAY_BOOTSTRAP_KEY": KEY}
        with gateway_in_front(stack, root, **env) as gateway:
            yield Platform(stack, gateway)


@pytest.fixture(scope="module")
def client(platform: Platform) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{platform.gateway.url}/v1", api_key=KEY, max_retries=0, timeout=120
    )


@pytest.fixture(scope="module")
def ingested(platform: Platform) -> None:
    documents = {"documents": [{"id": "bell", "text": BELL, "metadata": {"title": "Telephone"}}]}
    response = httpx.post(
        f"{platform.gateway.url}/v1/collections/docs/documents",
        json=documents,
        headers=AUTH,
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.json()["ids"] == ["bell"]


def _ask(client: openai.OpenAI, text: str, session_id: str, **extra: Any) -> Any:
    return client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": text}],
        extra_body={"session_id": session_id},
        **extra,
    )


@pytest.mark.parametrize(
    ("text", "intent", "expected"),
    [
        ("Who invented the telephone?", "factual", "1876"),
        ("A farmer has 30 heads and 74 legs. How many cows?", "reasoning", "7"),
        ("Write a haiku about rain", "creative", "Rain on the window"),
        ("Convert 72 F to C", "tool", "22.2"),
        ("Hi!", "chat", "How can I help"),
    ],
)
def test_each_intent_answers_through_the_gateway(
    client: openai.OpenAI, ingested: None, text: str, intent: str, expected: str
) -> None:
    completion = _ask(client, text, f"gw-{intent}")
    assert expected in (completion.choices[0].message.content or "")
    pipeline = (completion.model_extra or {})["pipeline"]
    assert pipeline["intent"] == intent
    assert set(pipeline["scores"]) == {"factual", "reasoning", "creative", "tool", "chat"}


def test_factual_answers_list_their_sources(client: openai.OpenAI, ingested: None) -> None:
    completion = _ask(client, "Who was granted the patent for the telephone?", "gw-sources")
    content = completion.choices[0].message.content or ""
    assert "[1]" in content and "**Sources**" in content and "1. *Telephone*" in content
    verification = (completion.model_extra or {})["pipeline"]["verification"]
    assert verification["removed"] == []
    assert verification["citations"][0]["number"] == 1
    assert verification["citations"][0]["supported"] is not None


def test_streamed_answer_and_feedback_reach_memory(
    client: openai.OpenAI, platform: Platform, ingested: None
) -> None:
    stream = _ask(client, "Hi!", "gw-stream", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "How can I help" in text
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    extra = final.model_extra or {}
    assert extra["pipeline"]["intent"] == "chat"
    assert chunks[-1].usage is not None
    rating = {"session_id": "gw-stream", "message_id": extra["message_id"], "rating": 1}
    stored = httpx.post(
        f"{platform.gateway.url}/v1/feedback", json=rating, headers=AUTH, timeout=10
    )
    assert stored.status_code == 201, stored.text
    listed = httpx.get(
        f"{platform.gateway.url}/v1/feedback",
        params={"session_id": "gw-stream"},
        headers=AUTH,
        timeout=10,
    ).json()
    assert [f["message_content"] for f in listed["data"]] == [text.strip()]


def test_feedback_on_an_unknown_message_is_a_404(platform: Platform) -> None:
    rating = {"session_id": "gw-none", "message_id": "nope", "rating": -1}
    response = httpx.post(
        f"{platform.gateway.url}/v1/feedback", json=rating, headers=AUTH, timeout=10
    )
    assert response.status_code == 404
    assert response.json()["error"]["service"] == "memory_svc"


def test_embeddings_come_from_rag(client: openai.OpenAI) -> None:
    result = client.embeddings.create(input=["hello world"], model="all-MiniLM-L6-v2")
    assert len(result.data[0].embedding) == 384


def test_models_and_direct_model_calls(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "auto" and len(ids) >= 2
    completion = client.chat.completions.create(
        model=ids[1], messages=[{"role": "user", "content": "Hi!"}]
    )
    assert "How can I help" in (completion.choices[0].message.content or "")


def test_streamed_factual_answer_ends_with_sources(client: openai.OpenAI, ingested: None) -> None:
    stream = _ask(client, "Who invented the telephone?", "gw-stream-factual", stream=True)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "1876" in text
    assert "**Sources**" in text and "1. *Telephone*" in text
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason == "stop")
    pipeline = (final.model_extra or {})["pipeline"]
    assert pipeline["sources"][0]["doc_id"] == "bell"
    assert pipeline["verification"]["removed"] == []
