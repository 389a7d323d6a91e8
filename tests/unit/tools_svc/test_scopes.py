"""The caller's scopes decide which tools it sees and may run; every call names the caller."""

from __future__ import annotations

import json

from common.caller import DEFAULT_MEMBER_SCOPES, Caller
from tests.helpers.tools_fakes import AppClient, AppFactory
from tools_svc.settings import ToolsSettings

MEMBER = Caller(tenant="acme", key_id="abc123", role="member", scopes=frozenset({"chat"}))


def caller_headers(caller: Caller, request_id: str = "scope-test") -> dict[str, str]:
    return {**caller.headers(), "X-Request-ID": request_id}


def with_scopes(*scopes: str) -> Caller:
    return Caller(tenant="acme", key_id="abc123", role="member", scopes=frozenset(scopes))


async def names(client: AppClient, caller: Caller | None) -> set[str]:
    headers = caller_headers(caller) if caller is not None else {}
    response = await client.get("/v1/tools", headers=headers)
    assert response.status_code == 200
    return {t["function"]["name"] for t in response.json()["data"]}


async def test_the_listing_holds_only_what_the_key_may_use(
    settings: ToolsSettings, app_client: AppFactory
) -> None:
    async with app_client(settings) as client:
        internal = await names(client, None)
        member = await names(client, with_scopes(*DEFAULT_MEMBER_SCOPES))
        bare = await names(client, with_scopes("chat"))
        python_only = await names(client, with_scopes("chat", "tools:python"))
        http_only = await names(client, with_scopes("tools:http"))

    assert {"python", "http_get", "knowledge_search", "calculator"} <= internal
    assert "python" not in member and "http_get" not in member
    assert "knowledge_search" in member and "calculator" in member
    assert "knowledge_search" not in bare and "calculator" in bare
    assert "python" in python_only and "http_get" not in python_only
    assert "http_get" in http_only and "python" not in http_only


async def test_a_key_without_the_scope_gets_403_naming_it_and_an_audit_record(
    settings: ToolsSettings, app_client: AppFactory
) -> None:
    async with app_client(settings) as client:
        python = await client.post(
            "/v1/tools/python/invoke",
            json={"arguments": {"code": "print(1)"}},
            headers=caller_headers(MEMBER, "denied-1"),
        )
        http = await client.post(
            "/v1/tools/http_get/invoke",
            json={"arguments": {"url": "http://127.0.0.1/"}},
            headers=caller_headers(MEMBER, "denied-2"),
        )

    assert python.status_code == 403 and http.status_code == 403
    assert python.json()["error"]["type"] == "permission_error"
    assert "'tools:python'" in python.json()["error"]["message"]
    assert "'tools:http'" in http.json()["error"]["message"]
    assert python.json()["error"]["code"] == "missing_scope"
    records = [
        json.loads(line)
        for line in (settings.data_dir / "tools_audit.jsonl").read_text().splitlines()
    ]
    assert [(r["tool"], r["outcome"], r["status"]) for r in records] == [
        ("python", "refused", 403),
        ("http_get", "refused", 403),
    ]
    assert [r["request_id"] for r in records] == ["denied-1", "denied-2"]


async def test_every_record_names_the_callers_tenant_and_key(
    settings: ToolsSettings, app_client: AppFactory
) -> None:
    allowed = with_scopes("chat", "tools:python")
    async with app_client(settings) as client:
        ran = await client.post(
            "/v1/tools/python/invoke",
            json={"arguments": {"code": "print(1)"}},
            headers=caller_headers(allowed, "allowed-1"),
        )
        await client.post("/v1/tools/calculator/invoke", json={"arguments": {"expression": "1+1"}})

    # The scope let the call through to the sandbox (which is off in unit tests: 503).
    assert ran.status_code == 503
    records = [
        json.loads(line)
        for line in (settings.data_dir / "tools_audit.jsonl").read_text().splitlines()
    ]
    assert [(r["tool"], r["tenant"], r["key_id"]) for r in records] == [
        ("python", "acme", "abc123"),
        # No caller headers: the platform itself.
        ("calculator", "default", None),
    ]
    assert records[0]["request_id"] == "allowed-1" and records[0]["outcome"] != "refused"
