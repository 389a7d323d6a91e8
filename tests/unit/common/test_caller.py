"""The caller of a request: parsed from headers inside the platform, sent on with every call."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from common.caller import (
    ALL_SCOPES,
    DEFAULT_MEMBER_SCOPES,
    INTERNAL_CALLER,
    Caller,
    InvalidCaller,
    caller_from_headers,
    caller_var,
    current_caller,
    parse_scopes,
)
from common.http_client import ServiceClient
from common.log import JsonFormatter
from common.metrics import ServiceMetrics
from common.middleware import RequestContextMiddleware
from common.request_context import client_request_id_var

MEMBER = Caller(tenant="acme", key_id="ab12", role="member", scopes=frozenset({"chat"}))


def test_headers_round_trip() -> None:
    assert caller_from_headers(MEMBER.headers()) == MEMBER
    # Header names are matched whatever their case.
    lowered = {k.lower(): v for k, v in MEMBER.headers().items()}
    assert caller_from_headers(lowered) == MEMBER


def test_no_tenant_header_names_no_caller() -> None:
    assert caller_from_headers({"x-key-role": "admin"}) is None
    assert current_caller() is INTERNAL_CALLER
    assert INTERNAL_CALLER.is_admin and set(INTERNAL_CALLER.scopes) == set(ALL_SCOPES)


def test_a_named_tenant_without_scopes_gets_none() -> None:
    caller = caller_from_headers({"X-Tenant-ID": "acme"})
    assert caller is not None
    assert caller.role == "member"
    assert caller.scopes == frozenset()
    assert not caller.allows("chat")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Tenant-ID": "Acme"},
        {"X-Tenant-ID": "a:b"},
        {"X-Tenant-ID": "../x"},
        {"X-Tenant-ID": ""},
        {"X-Tenant-ID": "acme", "X-Key-Role": "root"},
        {"X-Tenant-ID": "acme", "X-Key-ID": "not-hex"},
        {"X-Tenant-ID": "acme", "X-Key-Scopes": "chat everything"},
    ],
)
def test_malformed_caller_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(InvalidCaller):
        caller_from_headers(headers)


def test_scopes_parse_from_commas_or_spaces() -> None:
    assert parse_scopes("chat, images  tools:python") == {"chat", "images", "tools:python"}
    assert "tools:python" not in DEFAULT_MEMBER_SCOPES
    assert "tools:http" not in DEFAULT_MEMBER_SCOPES


def _app(edge: bool) -> FastAPI:
    app = FastAPI()
    app.add_middleware(
        RequestContextMiddleware, service="svc", metrics=ServiceMetrics("svc"), edge=edge
    )

    @app.get("/who")
    async def who() -> dict[str, object]:
        caller = current_caller()
        return {
            "tenant": caller.tenant,
            "key_id": caller.key_id,
            "scopes": sorted(caller.scopes),
            "client_request_id": client_request_id_var.get(),
        }

    return app


def test_an_internal_service_takes_the_caller_from_headers() -> None:
    with TestClient(_app(edge=False)) as client:
        assert client.get("/who", headers=MEMBER.headers()).json()["tenant"] == "acme"
        assert client.get("/who").json()["tenant"] == "default"
        refused = client.get("/who", headers={"X-Tenant-ID": "no:colons"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "invalid_caller"
        # Its request id is the one it was given.
        kept = client.get("/who", headers={"X-Request-ID": "rid-7"})
        assert kept.headers["X-Request-ID"] == "rid-7"


def test_the_edge_ignores_caller_headers_and_makes_its_own_request_id() -> None:
    with TestClient(_app(edge=True)) as client:
        response = client.get("/who", headers={**MEMBER.headers(), "X-Request-ID": "mine-1"})
    body = response.json()
    assert body["tenant"] == "default" and body["key_id"] is None
    assert response.headers["X-Request-ID"] != "mine-1"
    assert body["client_request_id"] == "mine-1"


async def test_the_caller_travels_with_service_calls() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    client = ServiceClient("rag_svc", "http://rag", transport=httpx.MockTransport(handler))
    try:
        token = caller_var.set(MEMBER)
        try:
            await client.get_json("/x")
        finally:
            caller_var.reset(token)
        await client.get_json("/x")
    finally:
        await client.aclose()
    assert caller_from_headers(dict(seen[0].headers)) == MEMBER
    # Outside a request no caller is named: the receiver treats the call as the platform's.
    assert "x-tenant-id" not in seen[1].headers


def test_log_lines_name_the_tenant_and_key() -> None:
    record = logging.LogRecord("svc", logging.INFO, __file__, 1, "hi", (), None)
    token = caller_var.set(MEMBER)
    try:
        line = json.loads(JsonFormatter("gateway").format(record))
    finally:
        caller_var.reset(token)
    assert line["tenant"] == "acme" and line["key_id"] == "ab12"
