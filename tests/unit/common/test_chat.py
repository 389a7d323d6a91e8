"""The core model's chat completions as services call them, against httpx mock transports."""

from __future__ import annotations

import json

import httpx
import pytest

from common.chat import ChatClient
from common.errors import UpstreamError
from common.http_client import ServiceClient
from common.retry import RetryPolicy


def moe(handler: httpx.MockTransport) -> ChatClient:
    client = ServiceClient("moe_svc", "http://moe", transport=handler, retry=RetryPolicy(0))
    return ChatClient(client, "", timeout_s=5)


async def test_chat_model_finds_its_model_and_cuts_at_the_stop_marker() -> None:
    seen: list[dict[str, object]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "smol-moe"}]})
        seen.append(json.loads(request.content))
        content = "Action: calculator\nObservation: made up"
        return httpx.Response(200, json={"choices": [{"message": {"content": content}}]})

    model = moe(httpx.MockTransport(handle))
    completion = await model.complete(
        [{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=8, stop=["Observation:"]
    )

    assert completion.text == "Action: calculator\n"
    assert completion.estimated and completion.completion_tokens > 0
    assert seen[0]["model"] == "smol-moe" and seen[0]["stop"] == ["Observation:"]
    assert model.name == "smol-moe"


async def test_chat_model_reports_usage_when_given() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": "ok"}}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
            },
        )

    client = ServiceClient("moe_svc", "http://moe", transport=httpx.MockTransport(handle))
    completion = await ChatClient(client, "m", 5).complete(
        [{"role": "user", "content": "x"}], temperature=0.0, max_tokens=4
    )

    assert (completion.prompt_tokens, completion.completion_tokens) == (12, 3)
    assert not completion.estimated


async def test_a_reply_without_choices_is_a_502_naming_the_upstream() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": []})
        return httpx.Response(200, json={"object": "chat.completion"})

    with pytest.raises(UpstreamError) as no_models:
        await moe(httpx.MockTransport(handle)).resolve()
    assert no_models.value.status_code == 502 and "lists no models" in str(no_models.value)
    with pytest.raises(UpstreamError) as no_choices:
        await moe(httpx.MockTransport(handle)).with_model("m").complete([], max_tokens=4)
    assert no_choices.value.code == "bad_upstream_response"


async def test_experts_are_asked_for_and_returned_when_wanted() -> None:
    seen: list[dict[str, object]] = []
    per_layer = [[3, 0, 1], [2, 2, 0]]

    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        answer: dict[str, object] = {"choices": [{"message": {"content": "ok"}}]}
        if body.get("return_experts"):
            answer["experts"] = [{"per_layer": per_layer}]
        return httpx.Response(200, json=answer)

    chat = ChatClient(
        ServiceClient("moe_svc", "http://moe", transport=httpx.MockTransport(handle)), "m"
    )
    plain = await chat.complete([{"role": "user", "content": "x"}], max_tokens=4)
    asked = await chat.complete(
        [{"role": "user", "content": "x"}], max_tokens=4, return_experts=True
    )

    assert "return_experts" not in seen[0] and plain.experts is None
    assert seen[1]["return_experts"] is True
    assert asked.experts == {"per_layer": per_layer}
