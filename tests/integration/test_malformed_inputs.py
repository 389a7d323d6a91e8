"""Malformed input answers 400 in the shared error shape on real services, never 500.

The gateway (with a key, in front of its fakes), memory_svc (on a real Redis)
and tools_svc each get every input below: JSON nested 100k deep, lone
surrogates in a JSON string, raw surrogate bytes, percent-encoded surrogates,
NUL and CR LF in paths and queries, NUL and bare CR in header values, a
header too large. Afterwards each service still answers its readiness probe
as it did before.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.helpers.servers import RunningServer, start_redis, start_service
from tests.integration.gateway_support import admin, gateway_stack
from tests.integration.memory.harness import start_memory

pytestmark = pytest.mark.integration


@dataclass
class Target:
    """A running service and where to send each kind of malformed input."""

    name: str
    server: RunningServer
    headers: dict[str, str]
    json_path: str  # a POST route that takes a JSON body (FastAPI-validated or read by hand)
    get_path: str  # a GET route, for query strings
    path_prefix: str  # a route with a path parameter; the malformed name is appended


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    log_dir: Path = tmp_path_factory.mktemp("malformed")
    # The 100k-deep bodies weigh ~200k estimated tokens each: room for all of them.
    limits = {"GATEWAY_TPM_LIMIT": "1000000000", "GATEWAY_RPM_LIMIT": "100000"}
    with gateway_stack(log_dir / "gw", env=limits) as (gateway, _fake, gw_redis):
        key = admin(gw_redis, "create", "--name", "malformed").splitlines()[-1]
        redis = start_redis(log_dir / "redis")
        memory = start_memory(log_dir / "memory", redis.url)
        tools = start_service("tools_svc", log_dir / "tools")
        try:
            yield {
                "gateway": Target(
                    "gateway",
                    gateway,
                    {"Authorization": f"Bearer {key}"},
                    "/v1/chat/completions",
                    "/v1/models",
                    "/v1/collections/",
                ),
                "memory_svc": Target(
                    "memory_svc", memory, {}, "/v1/feedback", "/v1/feedback", "/v1/users/"
                ),
                "memory_svc:state": Target(
                    "memory_svc", memory, {}, "/v1/users/u1/state", "/v1/feedback", "/v1/sessions/"
                ),
                "tools_svc": Target(
                    "tools_svc", tools, {}, "/v1/tools/calculator/invoke", "/v1/tools", "/v1/tools/"
                ),
            }
        finally:
            tools.stop()
            memory.stop()
            redis.stop()


BODIES = {
    "nested-100k-arrays": b"[" * 100_000 + b"]" * 100_000,
    "nested-in-a-field": b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nested-objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "lone-high-surrogate": b'{"model": "m", "messages": [{"role": "user", "content": "\\ud800"}]}',
    "lone-low-surrogate": b'{"arguments": {"expression": "\\udc00"}, "rating": 1}',
    "reversed-pair": b'{"content": "\\udc00\\ud800"}',
    "surrogate-key": b'{"\\ud83d": 1}',
    "raw-surrogate-bytes": b'{"content": "\xed\xa0\x80"}',
    "not-utf8": b'{"content": "\xff\xfe"}',
}

URLS = {
    "query-surrogate": lambda t: f"{t.get_path}?user=%ED%A0%80&q=%ED%A0%80",
    "query-nul": lambda t: f"{t.get_path}?user=a%00b",
    "path-surrogate": lambda t: f"{t.path_prefix}%ED%A0%80",
    "path-nul": lambda t: f"{t.path_prefix}a%00b",
    "path-crlf": lambda t: f"{t.path_prefix}a%0D%0ASet-Cookie:%20x",
}

RAW_HEADERS = {
    "header-nul": b"X-Note: a\x00b",
    "header-bare-cr": b"X-Note: a\rb",
    "header-too-large": b"X-Note: " + b"a" * 200_000,
}


def assert_shared_400(target: Target, status: int, error: dict[str, object]) -> None:
    assert status in (400, 431), error
    assert error["type"] == "invalid_request_error"
    assert error["service"] == target.name
    assert error["message"]


@pytest.mark.parametrize("body", list(BODIES), ids=list(BODIES))
@pytest.mark.parametrize("where", ["gateway", "memory_svc", "memory_svc:state", "tools_svc"])
def test_malformed_json_bodies_answer_400(
    targets: dict[str, Target], where: str, body: str
) -> None:
    target = targets[where]
    method = "PUT" if where == "memory_svc:state" else "POST"
    for content_type in ("application/json", None):
        headers = dict(target.headers)
        if content_type:
            headers["Content-Type"] = content_type
        response = httpx.request(
            method, target.server.url + target.json_path, content=BODIES[body], headers=headers
        )
        # Without a content type a route may refuse the media type first (415).
        expected = {400} if content_type else {400, 415}
        assert response.status_code in expected, response.text
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["service"] == target.name


@pytest.mark.parametrize("url", list(URLS), ids=list(URLS))
@pytest.mark.parametrize("where", ["gateway", "memory_svc", "tools_svc"])
def test_malformed_paths_and_queries_answer_400(
    targets: dict[str, Target], where: str, url: str
) -> None:
    target = targets[where]
    response = httpx.get(target.server.url + URLS[url](target), headers=target.headers)
    assert response.status_code == 400, response.text
    assert_shared_400(target, 400, response.json()["error"])
    assert "set-cookie" not in response.headers


def raw_request(server: RunningServer, head: bytes) -> tuple[int, bytes] | None:
    """The status and body of the answer; None when the server reset the connection first.

    A server that stops reading an oversized head closes with the rest unread,
    which the kernel turns into a reset that may overtake its 431.
    """
    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        data = b""
        try:
            sock.sendall(head)
            while chunk := sock.recv(65536):
                data += chunk
        except (BrokenPipeError, ConnectionResetError):
            if not data:
                return None
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split(b" ")[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("header", list(RAW_HEADERS), ids=list(RAW_HEADERS))
@pytest.mark.parametrize("where", ["gateway", "memory_svc", "tools_svc"])
def test_malformed_header_values_answer_4xx_and_close(
    targets: dict[str, Target], where: str, header: str
) -> None:
    target = targets[where]
    head = b"GET " + target.get_path.encode() + b" HTTP/1.1\r\nHost: t\r\n"
    answer = raw_request(target.server, head + RAW_HEADERS[header] + b"\r\n\r\n")
    if answer is None:
        assert header == "header-too-large", "reset without an answer"
        return
    status, body = answer
    assert status == (431 if header == "header-too-large" else 400)
    assert_shared_400(target, status, json.loads(body)["error"])


@pytest.mark.parametrize("where", ["gateway", "memory_svc", "tools_svc"])
def test_services_stay_ready_and_log_no_500(targets: dict[str, Target], where: str) -> None:
    target = targets[where]
    assert httpx.get(f"{target.server.url}/healthz").status_code == 200
    assert httpx.get(f"{target.server.url}/readyz").status_code in (200, 503)
    logs = target.server.logs()
    assert " 500" not in logs and '"status": 500' not in logs, logs[-3000:]
    assert "Traceback" not in logs, logs[-3000:]
