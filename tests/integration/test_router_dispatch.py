"""router_svc as a real process fanning out to the real memory_svc (on real Redis), rag_svc,
reasoning_svc and tools_svc. moe_svc's OpenAI API and creative_svc are scripted stand-ins
until they serve (tests/helpers/router_fakes.py): every answer the model writes here is
scripted, every other hop is the real service."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.router_fakes import FAKE_EXPERTS
from tests.helpers.servers import RunningServer
from tests.integration.pipeline_stack import BELL, RULES, PipelineStack, pipeline_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineStack]:
    with pipeline_stack(tmp_path_factory.mktemp("platform")) as stack:
        documents = {"documents": [{"id": "bell", "text": BELL}]}
        httpx.post(
            f"{stack.rag.url}/v1/collections/docs/documents", json=documents, timeout=120
        ).raise_for_status()
        yield stack


def dispatch(router: RunningServer, text: str, **extra: Any) -> httpx.Response:
    payload = {"messages": [{"role": "user", "content": text}], **extra}
    return httpx.post(f"{router.url}/v1/dispatch", json=payload, timeout=120)


def ran(body: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in body["pipeline"]["steps"]}


@pytest.mark.parametrize(
    ("text", "intent", "step", "expected"),
    [
        ("Who invented the telephone?", "factual", "rag.answer", "1876"),
        ("A farmer has 30 heads and 74 legs. How many cows?", "reasoning", "reasoning.reason", "7"),
        ("Draw a handbag", "creative", "creative.ideate", "handbag"),
        ("Write a haiku about rain", "creative", "moe.answer", "Rain on the window"),
        ("Convert 72 F to C", "tool", "tools.invoke", "22.2"),
        ("What time is it in Tokyo right now?", "tool", "reasoning.reason", "Tokyo"),
        ("Hi!", "chat", "moe.answer", "How can I help"),
    ],
)
def test_each_intent_is_answered_through_the_services(
    platform: PipelineStack, text: str, intent: str, step: str, expected: str
) -> None:
    response = dispatch(platform.router, text, session_id=f"s-{intent}-{step}")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pipeline"]["intent"] == intent and not body["pipeline"]["fallback"]
    assert expected in body["message"]["content"]
    steps = ran(body)
    assert steps[step] == "ok"
    assert steps["memory.write_user"] == steps["memory.context"] == "ok"
    assert steps["memory.write_assistant"] == "ok"
    assert all(s["latency_ms"] >= 0 for s in body["pipeline"]["steps"])
    # Experts per layer when the core model wrote the answer, not when another service did.
    expected_experts = {"per_layer": FAKE_EXPERTS} if step == "moe.answer" else None
    assert body["pipeline"]["experts"] == expected_experts


def test_factual_answers_carry_sources_and_citations(platform: PipelineStack) -> None:
    body = dispatch(platform.router, "Who was granted the patent for the telephone?").json()

    pipeline = body["pipeline"]
    assert pipeline["sourced"] is True and pipeline["sources"][0]["doc_id"] == "bell"
    assert pipeline["citations"] and pipeline["citations"][0]["number"] == 1


def test_pal_and_react_traces_reach_the_pipeline(platform: PipelineStack) -> None:
    # The agent's scripted turns start over.
    httpx.put(f"{platform.fake.url}/script", json=RULES).raise_for_status()
    body = dispatch(platform.router, "What time is it in Tokyo right now?").json()

    reasoning = body["pipeline"]["reasoning"]
    assert reasoning["strategy"] == "react"
    assert body["pipeline"]["tool_calls"][0]["tool"] == "datetime_now"
    observation = next(e for e in reasoning["trace"] if e["kind"] == "observation")
    assert "Asia/Tokyo" in observation["content"]


def test_the_session_is_remembered_across_turns(platform: PipelineStack) -> None:
    sid = "s-memory"
    dispatch(platform.router, "Hi!", session_id=sid, user="ana")
    httpx.delete(f"{platform.fake.url}/requests")
    dispatch(platform.router, "Hello again!", session_id=sid, user="ana")

    stored = httpx.get(f"{platform.memory.url}/v1/sessions/{sid}/messages").json()["data"]
    assert [m["role"] for m in reversed(stored)] == ["user", "assistant", "user", "assistant"]
    assert stored[-1]["content"] == "Hi!" and stored[0]["metadata"]["intent"] == "chat"
    asked = httpx.get(f"{platform.fake.url}/requests").json()[-1]["messages"]
    assert [m["content"] for m in asked[1:]] == ["Hi!", "Hello! How can I help?", "Hello again!"]


def test_a_follow_up_sent_alone_is_read_with_the_sessions_turns(platform: PipelineStack) -> None:
    sid = "s-follow-up"
    first = dispatch(platform.router, "Convert 68 F to C", session_id=sid).json()
    assert first["pipeline"]["intent"] == "tool"
    httpx.put(f"{platform.fake.url}/script", json=RULES).raise_for_status()

    body = dispatch(platform.router, "and in Tokyo?", session_id=sid).json()

    assert body["pipeline"]["context_used"] and body["pipeline"]["intent"] == "tool"


def test_streaming_sends_route_steps_deltas_and_done(platform: PipelineStack) -> None:
    payload = {"messages": [{"role": "user", "content": "Hi!"}], "stream": True}
    events: list[Any] = []
    with httpx.stream(
        "POST", f"{platform.router.url}/v1/dispatch", json=payload, timeout=60
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                events.append(data if data == "[DONE]" else json.loads(data))

    assert events[0]["type"] == "route" and events[-1] == "[DONE]"
    done = events[-2]
    deltas = "".join(e["content"] for e in events[1:-2] if e["type"] == "delta")
    assert done["type"] == "done" and deltas == done["message"]["content"]
    assert {e["step"]["name"] for e in events if isinstance(e, dict) and e["type"] == "step"} >= {
        "moe.answer"
    }
    # The core model's experts per layer for this answer, for the UI's heatmap.
    assert done["pipeline"]["experts"] == {"per_layer": FAKE_EXPERTS}


def test_route_reads_a_follow_up_with_its_history(platform: PipelineStack) -> None:
    history = [
        {"role": "user", "content": "What time is it in London?"},
        {"role": "assistant", "content": "It is 14:05 in London."},
    ]
    response = httpx.post(
        f"{platform.router.url}/v1/route",
        json={"text": "and in Tokyo?", "history": history},
        timeout=10,
    )

    body = response.json()
    assert body["intent"] == "tool" and body["context_used"]


@pytest.mark.parametrize(
    ("path", "payload", "status"),
    [
        ("/v1/route", {"text": ""}, 400),
        ("/v1/route", {"text": "hi", "history": [{"role": "user", "content": "x"}] * 60}, 413),
        ("/v1/dispatch", {"messages": [{"role": "user", "content": "hi"}] * 101}, 413),
        ("/v1/dispatch", {"messages": [{"role": "user", "content": ""}]}, 400),
        (
            "/v1/dispatch",
            {"messages": [{"role": "user", "content": "hi"}], "options": {"strategy": "x"}},
            400,
        ),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    platform: PipelineStack, path: str, payload: dict[str, Any], status: int
) -> None:
    response = httpx.post(f"{platform.router.url}{path}", json=payload, timeout=10)

    assert response.status_code == status
    assert response.json()["error"]["message"]


def test_with_rag_stopped_a_factual_question_is_answered_unsourced(platform: PipelineStack) -> None:
    # Last in this module: it stops rag_svc for good.
    platform.rag.stop()

    response = dispatch(platform.router, "Who invented the telephone?", session_id="s-norag")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pipeline"]["sourced"] is False and body["pipeline"]["sources"] == []
    assert ran(body)["rag.answer"] == "failed" and ran(body)["moe.answer"] == "ok"
    assert "no sources" in body["message"]["content"]
    assert any("without sources" in n for n in body["pipeline"]["notes"])
