"""The registry through HTTP: specs, argument validation, errors, truncation, audit."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from common.caller import INTERNAL_CALLER
from common.contracts.tools import ToolList
from tests.helpers.tools_fakes import AppFactory
from tools_svc.audit import AuditLog
from tools_svc.registry import Tool, ToolArguments, ToolRegistry, ToolResult
from tools_svc.settings import ToolsSettings

TOOLS = {
    "python",
    "calculator",
    "knowledge_search",
    "http_get",
    "datetime_now",
    "unit_convert",
    "training_planner",
}


async def test_lists_openai_function_specs(settings: ToolsSettings, app_client: AppFactory) -> None:
    async with app_client(settings) as client:
        body = (await client.get("/v1/tools")).json()

    specs = ToolList.model_validate(body).data
    assert {s.function.name for s in specs} == TOOLS
    for spec in specs:
        assert spec.type == "function" and spec.function.description
        schema = spec.function.parameters
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert "title" not in json.dumps(schema)
    calculator = next(s for s in specs if s.function.name == "calculator").function.parameters
    assert calculator["required"] == ["expression"]
    assert calculator["properties"]["expression"]["maxLength"] == 1000


@pytest.mark.parametrize(
    ("tool", "arguments", "param"),
    [
        ("calculator", {}, "arguments.expression"),
        ("calculator", {"expression": 42}, "arguments.expression"),
        ("calculator", {"expression": "1", "extra": True}, "arguments.extra"),
        ("calculator", {"expression": "x" * 1001}, "arguments.expression"),
        ("calculator", {"expression": "1/0"}, "arguments.expression"),
        ("unit_convert", {"value": "72", "from_unit": "F", "to_unit": "C"}, "arguments.value"),
        ("unit_convert", {"value": 1, "from_unit": "kg", "to_unit": "m"}, "arguments.to_unit"),
        (
            "unit_convert",
            {"value": 1, "from_unit": "pc", "to_unit": "m"},
            "arguments.from_unit",
        ),
        ("datetime_now", {"timezone": "Mars/Olympus"}, "arguments.timezone"),
        ("datetime_now", {"timezone": "../../etc/passwd"}, "arguments.timezone"),
        ("training_planner", {"total_params": 1e9, "gpu_count": 0}, "arguments.gpu_count"),
        ("training_planner", {"total_params": 1e9, "gpu_count": 1, "mfu": 2}, "arguments.mfu"),
        ("knowledge_search", {"query": "q", "collection": "../admin"}, "arguments.collection"),
        ("knowledge_search", {"query": "q", "k": 0}, "arguments.k"),
        ("python", {"code": ""}, "arguments.code"),
        ("http_get", {"url": "http://[::1"}, "arguments.url"),
    ],
)
async def test_bad_arguments_answer_400_naming_the_field(
    settings: ToolsSettings, app_client: AppFactory, tool: str, arguments: Any, param: str
) -> None:
    async with app_client(settings) as client:
        response = await client.post(f"/v1/tools/{tool}/invoke", json={"arguments": arguments})

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error" and error["service"] == "tools_svc"
    assert error["request_id"] == response.headers["X-Request-ID"]


async def test_arguments_may_be_json_text(settings: ToolsSettings, app_client: AppFactory) -> None:
    async with app_client(settings) as client:
        ok = await client.post(
            "/v1/tools/calculator/invoke", json={"arguments": '{"expression": "6*7"}'}
        )
        bad = await client.post("/v1/tools/calculator/invoke", json={"arguments": "{not json"})
        wrong = await client.post("/v1/tools/calculator/invoke", json={"arguments": "[1]"})

    assert ok.json()["output"]["result"] == "42"
    assert (bad.status_code, bad.json()["error"]["param"]) == (400, "arguments")
    assert (wrong.status_code, wrong.json()["error"]["param"]) == (400, "arguments")


async def test_unknown_tool_is_404(settings: ToolsSettings, app_client: AppFactory) -> None:
    async with app_client(settings) as client:
        response = await client.post("/v1/tools/rm_rf/invoke", json={"arguments": {}})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "tool_not_found"


async def test_python_refused_with_the_reason_when_the_sandbox_is_off(
    settings: ToolsSettings, app_client: AppFactory
) -> None:
    async with app_client(settings) as client:
        response = await client.post("/v1/tools/python/invoke", json={"arguments": {"code": "1"}})
        ready = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "sandbox_unavailable"
    assert "disabled in unit tests" in response.json()["error"]["message"]
    # The service stays ready (its other tools work) and says why python is off.
    assert ready.status_code == 200
    assert ready.json()["checks"]["python_sandbox"]["error"].endswith("disabled in unit tests")


class Echo(Tool):
    name = "echo"
    description = "Echo text, slowly if asked."

    class arguments(ToolArguments):
        text: str
        sleep_s: float = 0

    timeout_s = 0.2

    async def run(self, arguments: Any) -> ToolResult:
        await asyncio.sleep(arguments.sleep_s)
        return ToolResult({"text": arguments.text, "items": [arguments.text]})


async def test_long_strings_are_cut_with_a_marker(tmp_path: Path) -> None:
    registry = ToolRegistry([Echo()], AuditLog(), max_output_chars=100)
    response = await registry.invoke("echo", {"text": "y" * 250}, INTERNAL_CALLER)

    assert response.truncated is True
    for text in (response.output["text"], response.output["items"][0]):
        assert text == "y" * 100 + "\n[... truncated 150 characters]"


async def test_a_slow_tool_times_out_with_an_error(tmp_path: Path) -> None:
    registry = ToolRegistry([Echo()], AuditLog(), max_output_chars=100)
    response = await registry.invoke("echo", {"text": "t", "sleep_s": 5}, INTERNAL_CALLER)

    assert response.output is None
    assert response.error == "timed out after 0.2 s"


async def test_every_call_is_audited_without_its_arguments(
    settings: ToolsSettings, app_client: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-live-0123456789abcdef"
    caplog.set_level(logging.INFO, logger="tools_svc.audit")
    async with app_client(settings) as client:
        for expression in (f"1 + 1 # {secret}", "2 +", f"{secret}"):
            await client.post(
                "/v1/tools/calculator/invoke",
                json={"arguments": {"expression": expression}},
                headers={"X-Request-ID": "audit-test-1"},
            )
        await client.post("/v1/tools/calculator/invoke", json={"arguments": {"expression": "2"}})
        await client.post("/v1/tools/calculator/invoke", json={"arguments": {"expression": "2"}})

    text = (settings.data_dir / "tools_audit.jsonl").read_text()
    assert secret not in text and secret not in caplog.text
    records = [json.loads(line) for line in text.splitlines()]
    assert [r["outcome"] for r in records] == ["ok", "invalid", "invalid", "ok", "ok"]
    assert [r["status"] for r in records] == [200, 400, 400, 200, 200]
    assert {r["tool"] for r in records} == {"calculator"}
    assert [r["request_id"] for r in records[:3]] == ["audit-test-1"] * 3
    assert records[1]["error_code"] == "invalid_expression"
    assert all(r["duration_ms"] >= 0 and len(r["args_digest"]) == 32 for r in records)
    # Equal arguments, equal digests; different arguments, different ones.
    assert records[3]["args_digest"] == records[4]["args_digest"] != records[0]["args_digest"]
