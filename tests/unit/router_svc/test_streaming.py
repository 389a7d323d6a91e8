"""POST /v1/dispatch with stream: route, steps and answer pieces as SSE, then done."""

from __future__ import annotations

import json
from typing import Any

from router_svc.settings import RouterSettings
from tests.helpers.router_unit_fakes import FakeUpstreams
from tests.unit.router_svc.conftest import AppClient


def events(text: str) -> list[Any]:
    out: list[Any] = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            data = block[len("data: ") :]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def test_streams_route_steps_deltas_and_the_pipeline(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.moe_reply = "Hello there, friend."
    payload = {"messages": [{"role": "user", "content": "Hi"}], "stream": True, "session_id": "s"}
    async with app_client(settings) as client:
        response = await client.post("/v1/dispatch", json=payload)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    stream = events(response.text)
    assert stream[0]["type"] == "route" and stream[0]["intent"] == "chat"
    assert stream[-1] == "[DONE]"
    done = stream[-2]
    assert done["type"] == "done" and done["message"]["content"] == "Hello there, friend."
    deltas = [e["content"] for e in stream if isinstance(e, dict) and e["type"] == "delta"]
    assert len(deltas) == 3 and "".join(deltas) == "Hello there, friend."
    steps = [e["step"]["name"] for e in stream if isinstance(e, dict) and e["type"] == "step"]
    assert steps == [s["name"] for s in done["pipeline"]["steps"]]
    # The answer streams between the model step's start and its record.
    kinds = [e["type"] for e in stream if isinstance(e, dict)]
    assert kinds.index("delta") < steps.index("moe.answer") + kinds.index("step") + 1
    assert fake.sessions["s"][-1]["content"] == "Hello there, friend."


async def test_a_failure_mid_plan_is_an_error_event(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    fake.down = {"moe_svc"}
    payload = {"messages": [{"role": "user", "content": "Hi"}], "stream": True}
    async with app_client(settings) as client:
        response = await client.post("/v1/dispatch", json=payload)

    stream = events(response.text)
    assert stream[-2]["type"] == "error" and stream[-2]["status"] == 503
    assert "moe_svc is unreachable" in stream[-2]["error"]["message"]
    assert stream[-1] == "[DONE]"


async def test_bad_input_is_refused_before_the_stream(
    settings: RouterSettings, app_client: AppClient
) -> None:
    payload = {"messages": [{"role": "assistant", "content": "Hi"}], "stream": True}
    async with app_client(settings) as client:
        response = await client.post("/v1/dispatch", json=payload)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "no_user_turn"
