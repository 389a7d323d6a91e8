"""The tool step of a dispatch: code runs only when asked for, and only for a key that may."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from common.caller import Caller
from router_svc.settings import RouterSettings
from tests.helpers.router_unit_fakes import FakeUpstreams
from tests.unit.router_svc.conftest import AppClient

CODE = "```python\nprint(2 ** 10)\n```"


def key(*scopes: str) -> dict[str, str]:
    return Caller(tenant="acme", key_id="abc123", role="member", scopes=frozenset(scopes)).headers()


async def dispatch(
    client: httpx.AsyncClient, text: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    payload = {"messages": [{"role": "user", "content": text}], "options": {"intent": "tool"}}
    response = await client.post("/v1/dispatch", json=payload, headers=headers or {})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def statuses(body: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in body["pipeline"]["steps"]}


@pytest.mark.parametrize(
    "text",
    [
        f"Can you explain what this snippet does?\n{CODE}",
        f"Review this code {CODE}",
        f"What does this do? {CODE}",
    ],
)
async def test_code_to_explain_goes_to_the_model_and_nothing_runs(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams, text: str
) -> None:
    async with app_client(settings) as client:
        body = await dispatch(client, text, key("chat", "tools:python"))

    assert body["message"]["content"] == "Hello from the model."
    assert statuses(body)["moe.answer"] == "ok" and "tools.invoke" not in statuses(body)
    assert fake.called("tools_svc") == [] and fake.called("reasoning_svc") == []
    assert body["pipeline"]["tool_calls"] == []
    # The model is shown the code to explain it.
    assert "print(2 ** 10)" in fake.called("moe_svc")[-1].body["messages"][-1]["content"]


async def test_a_key_without_the_python_scope_gets_an_answer_saying_so(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams
) -> None:
    async with app_client(settings) as client:
        body = await dispatch(client, f"Run this code:\n{CODE}", key("chat", "tools:http"))

    assert "'tools:python'" in body["message"]["content"]
    assert "not run" in body["message"]["content"]
    assert statuses(body)["tools.invoke"] == "skipped"
    assert fake.called("tools_svc") == [] and fake.called("reasoning_svc") == []
    assert any("tools:python" in n for n in body["pipeline"]["notes"])


@pytest.mark.parametrize("headers", [key("chat", "tools:python"), {}])
async def test_a_key_with_the_scope_or_the_platform_itself_runs_the_code(
    settings: RouterSettings, app_client: AppClient, fake: FakeUpstreams, headers: dict[str, str]
) -> None:
    async with app_client(settings) as client:
        body = await dispatch(client, f"What does this code output?\n{CODE}", headers)

    assert body["message"]["content"] == "Output:\n```\n1024\n```"
    assert [c.path for c in fake.called("tools_svc")] == ["/v1/tools/python/invoke"]
    assert fake.called("tools_svc")[0].body == {"arguments": {"code": "print(2 ** 10)"}}
