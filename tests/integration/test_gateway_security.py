"""The gateway's keys, scopes, rate limits and input limits, against a real Redis."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from gateway.api import v1
from tests.helpers.servers import RunningRedis, RunningServer
from tests.integration.gateway_support import admin, gateway_stack

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Who invented the telephone?"}]}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, RunningServer, RunningRedis]]:
    env = {
        "GATEWAY_AUTH_REQUIRED": "true",
        "GATEWAY_LOG_JSON": "true",
        "GATEWAY_MAX_BODY_BYTES": "4096",
        "GATEWAY_CORS_ORIGINS": '["http://ui.example"]',
        "GATEWAY_TPM_LIMIT": "100000",
    }
    with gateway_stack(tmp_path_factory.mktemp("gateway_security"), env) as servers:
        yield servers


@pytest.fixture(scope="module")
def gateway(stack: tuple[RunningServer, RunningServer, RunningRedis]) -> str:
    return stack[0].url


@pytest.fixture(scope="module")
def redis(stack: tuple[RunningServer, RunningServer, RunningRedis]) -> RunningRedis:
    return stack[2]


@pytest.fixture(scope="module")
def fake(stack: tuple[RunningServer, RunningServer, RunningRedis]) -> str:
    return stack[1].url


@pytest.fixture(scope="module")
def key(gateway: str, redis: RunningRedis) -> str:
    # An empty key store never means "open": every /v1 call is refused with the way out.
    for response in (
        httpx.get(f"{gateway}/v1/models"),
        httpx.post(f"{gateway}/v1/chat/completions", json=CHAT),
        httpx.get(f"{gateway}/v1/models", headers=_auth("sk-gw-abc-" + "x" * 32)),
    ):
        error = _error(response, 503)
        assert error["code"] == "no_api_keys"
        assert "python -m gateway.admin create --role admin" in str(error["message"])
        assert "GATEWAY_BOOTSTRAP_KEY" in str(error["message"])
    # The probes still answer.
    assert httpx.get(f"{gateway}/healthz").status_code == 200
    assert "status" in httpx.get(f"{gateway}/readyz").json()
    created = admin(redis, "create", "--name", "tests")
    assert created.startswith("sk-gw-")
    return created


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error: dict[str, object] = response.json()["error"]
    assert error["service"] == "gateway"
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def test_a_key_opens_the_api_and_reports_limits(gateway: str, key: str) -> None:
    response = httpx.get(f"{gateway}/v1/models", headers=_auth(key))
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit-requests"] == "600"
    assert int(response.headers["x-ratelimit-remaining-requests"]) < 600
    assert float(response.headers["x-gateway-overhead-ms"]) >= 0


def test_missing_and_unknown_keys_get_401(gateway: str, key: str) -> None:
    missing = _error(httpx.get(f"{gateway}/v1/models"), 401)
    assert missing["type"] == "authentication_error"
    assert missing["code"] == "missing_api_key"
    bad = _error(httpx.get(f"{gateway}/v1/models", headers=_auth("sk-gw-nope-nope")), 401)
    assert bad["code"] == "invalid_api_key"
    # Well formed, with the id of a real key, but not its secret.
    key_id = key.split("-")[2]
    forged = f"sk-gw-{key_id}-{'x' * 32}"
    assert _error(httpx.get(f"{gateway}/v1/models", headers=_auth(forged)), 401)["code"] == (
        "invalid_api_key"
    )
    basic = httpx.get(f"{gateway}/v1/models", headers={"Authorization": f"Basic {key}"})
    assert _error(basic, 401)["code"] == "missing_api_key"


def test_health_and_ui_need_no_key(gateway: str, key: str) -> None:
    assert httpx.get(f"{gateway}/healthz").status_code == 200
    assert httpx.get(f"{gateway}/").status_code == 200


def test_revoked_key_gets_403(gateway: str, redis: RunningRedis, key: str) -> None:
    record = json.loads(admin(redis, "create", "--name", "temp", "--json"))
    assert httpx.get(f"{gateway}/v1/models", headers=_auth(record["key"])).status_code == 200
    assert admin(redis, "revoke", record["id"]) == f"revoked {record['id']}"
    listed = [json.loads(line) for line in admin(redis, "list").splitlines()]
    assert {k["id"]: k["revoked"] for k in listed}[record["id"]] is True
    assert all("key" not in k for k in listed)
    error = _error(httpx.get(f"{gateway}/v1/models", headers=_auth(record["key"])), 403)
    assert error["type"] == "permission_error"
    assert error["code"] == "revoked_api_key"


def test_requests_per_minute_are_limited_per_key(
    gateway: str, redis: RunningRedis, key: str
) -> None:
    limited = admin(redis, "create", "--rpm", "3")
    for _ in range(3):
        assert httpx.get(f"{gateway}/v1/models", headers=_auth(limited)).status_code == 200
    response = httpx.get(f"{gateway}/v1/models", headers=_auth(limited))
    error = _error(response, 429)
    assert error["type"] == "rate_limit_error"
    assert error["code"] == "rate_limit_requests"
    assert 1 <= int(response.headers["retry-after"]) <= 120
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    # Another key has its own budget.
    assert httpx.get(f"{gateway}/v1/models", headers=_auth(key)).status_code == 200


def test_tokens_per_minute_are_limited_per_key(gateway: str, redis: RunningRedis) -> None:
    limited = admin(redis, "create", "--tpm", "60")
    long_question = {**CHAT, "messages": [{"role": "user", "content": "why? " * 80}]}
    response = httpx.post(
        f"{gateway}/v1/chat/completions", json=long_question, headers=_auth(limited)
    )
    error = _error(response, 429)
    assert error["code"] == "rate_limit_tokens"
    assert int(response.headers["retry-after"]) >= 1


def test_bad_input_gets_the_right_status(gateway: str, key: str) -> None:
    url = f"{gateway}/v1/chat/completions"
    headers = _auth(key)
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    assert _error(httpx.post(url, json=big, headers=headers), 413)["code"] == "body_too_large"
    malformed = httpx.post(
        url, content=b'{"model": "auto",', headers={**headers, "Content-Type": "application/json"}
    )
    assert _error(malformed, 400)["code"] == "invalid_json"
    form = httpx.post(url, data={"model": "auto"}, headers=headers)
    assert _error(form, 415)["code"] == "unsupported_media_type"
    missing = _error(httpx.post(url, json={"model": "auto"}, headers=headers), 400)
    assert missing["param"] == "messages"
    unknown = httpx.post(url, json={**CHAT, "model": "gpt-9"}, headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"


def test_cors_allows_the_configured_origin_only(gateway: str) -> None:
    preflight = {"Origin": "http://ui.example", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
    allowed = httpx.options(f"{gateway}/v1/chat/completions", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://ui.example"
    other = httpx.options(
        f"{gateway}/v1/chat/completions", headers={**preflight, "Origin": "http://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers


def test_local_key_is_kept_in_a_private_file(
    gateway: str, redis: RunningRedis, tmp_path: Path
) -> None:
    path = tmp_path / "gateway" / "local_api_key"
    first = admin(redis, "local", "--file", str(path))
    assert path.read_text().strip() == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert admin(redis, "local", "--file", str(path)) == first  # reused on the next start
    assert httpx.get(f"{gateway}/v1/models", headers=_auth(first)).status_code == 200
    key_id = first.removeprefix("sk-gw-").split("-")[0]
    admin(redis, "revoke", key_id)
    second = admin(redis, "local", "--file", str(path))
    assert second != first
    assert httpx.get(f"{gateway}/v1/models", headers=_auth(second)).status_code == 200


def test_chunked_bodies_over_the_limit_get_413(gateway: str, key: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    response = httpx.post(
        f"{gateway}/v1/chat/completions",
        content=chunks(),
        headers={**_auth(key), "Content-Type": "application/json"},
    )
    assert "content-length" not in response.request.headers
    assert _error(response, 413)["code"] == "body_too_large"


def test_streamed_answer_tokens_are_charged(gateway: str, redis: RunningRedis) -> None:
    limited = admin(redis, "create", "--tpm", "40")
    body = {"model": "fake-moe", "messages": [{"role": "user", "content": "Hi"}], "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with httpx.stream(
        "POST", f"{gateway}/v1/chat/completions", json=body, headers=_auth(limited)
    ) as response:
        assert response.status_code == 200
        remaining = int(response.headers["x-ratelimit-remaining-tokens"])
        response.read()
    after = httpx.get(f"{gateway}/v1/models", headers=_auth(limited))
    # The stub's usage chunk says 2 completion tokens: charged once the stream ended.
    assert int(after.headers["x-ratelimit-remaining-tokens"]) == remaining - 2


def _seen(fake: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{fake}/seen").json())


def test_a_key_without_a_scope_is_refused_that_route(
    gateway: str, fake: str, redis: RunningRedis
) -> None:
    chat_only = admin(redis, "create", "--tenant", "acme", "--scopes", "chat")
    before = len(_seen(fake))
    image = {"prompt": "a red square", "size": "64x64"}
    response = httpx.post(f"{gateway}/v1/images/generations", json=image, headers=_auth(chat_only))
    error = _error(response, 403)
    assert error["type"] == "permission_error"
    assert error["code"] == "insufficient_scope"
    assert "'images'" in str(error["message"])
    for path, body in (("/v1/embeddings", {"input": "hi", "model": "m"}), ("/v1/feedback", {})):
        refused = httpx.post(f"{gateway}{path}", json=body, headers=_auth(chat_only))
        assert _error(refused, 403)["code"] == "insufficient_scope"
    assert len(_seen(fake)) == before  # nothing went upstream
    # The same key chats, and the upstream hears who is calling.
    chat = httpx.post(f"{gateway}/v1/chat/completions", json=CHAT, headers=_auth(chat_only))
    assert chat.status_code == 200, chat.text
    caller = _seen(fake)[-1]["caller"]
    assert caller["X-Tenant-ID"] == "acme"
    assert caller["X-Key-ID"] == chat_only.split("-")[2]
    assert caller["X-Key-Role"] == "member"
    assert caller["X-Key-Scopes"] == "chat"


def _raw_request(gateway: str, head: str) -> bytes:
    """Send only a request's head (a body it announces never follows); the whole answer."""
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(head.encode())
        reader = conn.makefile("rb")
        answer = b""
        while not answer.endswith(b"\r\n\r\n"):
            line = reader.readline()
            if not line:
                return answer
            answer += line
        length = re.search(rb"content-length: (\d+)", answer.lower())
        return answer + (reader.read(int(length[1])) if length else b"")


def test_a_missing_key_is_refused_before_the_body_is_read(gateway: str, key: str) -> None:
    # The body is announced but never sent: a gateway that read it first would hang here.
    for framing in ("Content-Length: 4000", "Transfer-Encoding: chunked"):
        for authorization in ("", "Authorization: Bearer sk-gw-0bad-" + "x" * 32 + "\r\n"):
            answer = _raw_request(
                gateway,
                "POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"
                f"Content-Type: application/json\r\n{authorization}{framing}\r\n\r\n",
            )
            assert answer.startswith(b"HTTP/1.1 401"), answer[:200]


def test_path_names_are_checked_and_never_reach_the_upstream(
    gateway: str, fake: str, key: str
) -> None:
    document = {"documents": [{"text": "hello"}]}
    before = len(_seen(fake))
    statuses: dict[str, str] = {}
    for name in (".%23", "%00", "a%0D%0Ab", "%2E%2E", "..", "a.b", "x" * 65, "wiki%2Fx"):
        # Raw paths, as a hostile client sends them (httpx would normalise `..`).
        answer = _raw_request(
            gateway,
            f"POST /v1/collections/{name}/documents HTTP/1.1\r\nHost: gateway\r\n"
            f"Authorization: Bearer {key}\r\nContent-Length: 0\r\n\r\n",
        )
        statuses[name] = answer.split(b" ", 2)[1].decode()
        if statuses[name] == "400":
            # Control characters may already be refused as a bad URL, before routing.
            codes = (
                [b"invalid_collection_name", b"invalid_url"]
                if "%0" in name
                else [b"invalid_collection_name"]
            )
            assert any(b'"code":"' + code + b'"' in answer for code in codes), answer
    # A '/' in a name (encoded or not) matches no route at all.
    assert statuses.pop("wiki%2Fx") == "404"
    assert set(statuses.values()) == {"400"}, statuses
    assert len(_seen(fake)) == before
    ok = httpx.post(f"{gateway}/v1/collections/my-docs_1/documents", json=document,
                    headers=_auth(key))  # fmt: skip
    assert ok.status_code == 200, ok.text
    assert _seen(fake)[-1]["raw_path"] == "/v1/collections/my-docs_1/documents"


def test_feedback_queries_pass_only_documented_parameters(
    gateway: str, fake: str, key: str
) -> None:
    url = f"{gateway}/v1/feedback"
    listed = httpx.get(url, params={"session_id": "s-1", "rating": "-1", "limit": "5"},
                       headers=_auth(key))  # fmt: skip
    assert listed.status_code == 200, listed.text
    assert _seen(fake)[-1]["query"] == "session_id=s-1&rating=-1&limit=5"
    before = len(_seen(fake))
    for params in ({"admin": "1"}, {"rating": "2"}, {"session_id": "a b"}, {"limit": "0"},
                   {"tenant": "Other/One"}):  # fmt: skip
        error = _error(httpx.get(url, params=params, headers=_auth(key)), 400)
        assert error["type"] == "invalid_request_error"
    repeated = httpx.get(f"{url}?session_id=a&session_id=b", headers=_auth(key))
    assert _error(repeated, 400)["param"] == "session_id"
    assert len(_seen(fake)) == before


def test_the_gateway_makes_its_own_request_ids_and_audits_each_call(
    stack: tuple[RunningServer, RunningServer, RunningRedis], key: str
) -> None:
    gateway = stack[0]
    sent = "client-chosen-id-123"
    response = httpx.get(f"{gateway.url}/v1/models", headers={**_auth(key), "X-Request-ID": sent})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert request_id != sent
    refused = httpx.get(f"{gateway.url}/v1/models", headers={"X-Request-ID": sent})
    assert refused.headers["x-request-id"] not in (sent, request_id)
    # Lines are written as the responses end: wait for the refused call's access line.
    gateway.wait_for_log(refused.headers["x-request-id"])
    records = [json.loads(line) for line in gateway.logs().splitlines() if line.startswith("{")]
    audit = [r for r in records if r.get("logger") == "gateway.audit"]
    [line] = [r for r in audit if r["request_id"] == request_id]
    assert line["method"] == "GET" and line["route"] == "/v1/models" and line["status"] == 200
    assert line["key_id"] == key.split("-")[2] and line["tenant"] == "default"
    assert line["client_request_id"] == sent
    # A call without a valid key is not attributed to anyone.
    assert not [r for r in audit if r["request_id"] == refused.headers["x-request-id"]]


def test_every_v1_route_needs_a_key(gateway: str, key: str) -> None:
    routes = [route for route in v1.routes if isinstance(route, APIRoute)]
    assert len(routes) >= 7
    for route in routes:
        path = route.path.replace("{name}", "docs")
        for method in route.methods or ():
            response = httpx.request(method, f"{gateway}{path}", json={})
            assert _error(response, 401)["code"] == "missing_api_key", (method, path)
