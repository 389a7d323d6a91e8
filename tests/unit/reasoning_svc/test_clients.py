"""moe_svc and tools_svc as reasoning_svc calls them, against httpx mock transports."""

from __future__ import annotations

import json

import httpx

from common.http_client import ServiceClient
from common.retry import RetryPolicy
from reasoning_svc.llm import MoeChatModel
from reasoning_svc.tools_client import ToolsClient


def moe(handler: httpx.MockTransport) -> MoeChatModel:
    client = ServiceClient("moe_svc", "http://moe", transport=handler, retry=RetryPolicy(0))
    return MoeChatModel(client, "", timeout_s=5)


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
    completion = await MoeChatModel(client, "m", 5).complete(
        [{"role": "user", "content": "x"}], temperature=0.0, max_tokens=4
    )

    assert (completion.prompt_tokens, completion.completion_tokens) == (12, 3)
    assert not completion.estimated


async def test_tool_failures_come_back_as_observations() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/nope/invoke"):
            error = {"message": "Unknown tool 'nope'", "type": "not_found_error"}
            return httpx.Response(404, json={"error": error})
        return httpx.Response(
            200,
            json={
                "tool": "calculator",
                "output": {"result": "2"},
                "error": None,
                "duration_ms": 1.5,
            },
        )

    client = ServiceClient("tools_svc", "http://tools", transport=httpx.MockTransport(handle))
    tools = ToolsClient(client, timeout_s=5)

    ok = await tools.invoke("calculator", {"expression": "1+1"})
    missing = await tools.invoke("nope", {})
    odd = await tools.invoke("../admin", {})

    assert ok.output == {"result": "2"} and ok.error is None and ok.duration_ms == 1.5
    assert missing.error == "Unknown tool 'nope'"
    assert odd.error and "not a tool name" in odd.error


async def test_tools_down_lists_no_tools() -> None:
    client = ServiceClient(
        "tools_svc", "http://127.0.0.1:9", retry=RetryPolicy(0), connect_timeout_s=0.5
    )
    assert await ToolsClient(client, timeout_s=1).specs() == []
    await client.aclose()
