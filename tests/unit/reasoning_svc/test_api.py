"""POST /v1/reason over ASGI with a scripted model: answers, traces, and 4xx for bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from reasoning_svc.app import create_app
from reasoning_svc.settings import ReasoningSettings
from tests.helpers.reasoning_fakes import FakeTools, ScriptedModel


@asynccontextmanager
async def client_for(
    model: ScriptedModel, settings: ReasoningSettings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings or ReasoningSettings(), model=model, tools=FakeTools())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://reasoning") as client:
            yield client


async def test_reason_returns_answer_strategy_trace_and_usage() -> None:
    model = ScriptedModel(["```python\nprint((74 - 2 * 30) // 2)\n```"])
    async with client_for(model) as client:
        response = await client.post(
            "/v1/reason",
            json={"question": "30 heads and 74 legs: how many cows?", "strategy": "auto"},
        )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "7"
    assert body["strategy"] == "pal" and body["requested_strategy"] == "auto"
    assert body["trace"][0]["kind"] == "choice"
    assert [e["index"] for e in body["trace"]] == list(range(len(body["trace"])))
    assert body["tool_calls"][0]["tool"] == "python"
    assert body["usage"]["model_calls"] == 1 and body["usage"]["total_tokens"] == 15


async def test_context_is_shown_to_the_model_after_the_instruction() -> None:
    model = ScriptedModel(["Answer: 20 C"])
    context = [
        {"role": "user", "content": "Convert 68 F to C"},
        {"role": "assistant", "content": "20 C"},
    ]
    async with client_for(model) as client:
        response = await client.post(
            "/v1/reason", json={"question": "and 86 F?", "strategy": "cot", "context": context}
        )

    assert response.status_code == 200
    roles = [m["role"] for m in model.calls[0]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"question": ""}, 400, "question"),
        ({"question": "   "}, 400, "question"),
        ({"question": "q", "strategy": "magic"}, 400, "strategy"),
        ({"question": "q", "strategy": "self_consistency", "samples": 17}, 400, "samples"),
        ({"question": "q", "strategy": "react", "max_steps": 16}, 400, "max_steps"),
        ({"question": "q", "strategy": "tot", "beam_width": 6}, 400, "beam_width"),
        ({"question": "q", "strategy": "tot", "depth": 7}, 400, "depth"),
        ({"question": "q", "samples": 0}, 400, "samples"),
        ({"question": "q", "unknown": 1}, 400, "unknown"),
        ({"question": "x" * 8001}, 413, "question"),
        ({"question": "q", "context": [{"role": "user", "content": "c"}] * 21}, 413, "context"),
        ({"question": "q", "context": [{"role": "user", "content": "c" * 16_001}]}, 413, "context"),
    ],
)
async def test_bad_input_gets_a_clear_4xx(payload: dict[str, Any], status: int, param: str) -> None:
    model = ScriptedModel()
    async with client_for(model) as client:
        response = await client.post("/v1/reason", json=payload)

    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["service"] == "reasoning_svc" and error["message"]
    assert model.calls == []


async def test_limits_follow_the_settings() -> None:
    settings = ReasoningSettings(max_samples=3, samples=2)
    async with client_for(ScriptedModel(), settings) as client:
        response = await client.post(
            "/v1/reason", json={"question": "q", "strategy": "self_consistency", "samples": 4}
        )

    assert response.status_code == 400
    assert "at most 3" in response.json()["error"]["message"]


def test_defaults_above_their_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="REASONING_SAMPLES"):
        ReasoningSettings(samples=20, max_samples=16)
