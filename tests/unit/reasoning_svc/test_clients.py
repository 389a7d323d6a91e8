"""tools_svc as reasoning_svc calls it, against an httpx mock transport."""

from __future__ import annotations

import httpx

from common.http_client import ServiceClient
from common.retry import RetryPolicy
from reasoning_svc.tools_client import ToolsClient


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
