"""The gateway's keys, rate limits and input limits, against a real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import RunningRedis, RunningServer
from tests.integration.gateway_support import admin, gateway_stack

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Who invented the telephone?"}]}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunningServer, RunningServer, RunningRedis]]:
    env = {
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
def key(gateway: str, redis: RunningRedis) -> str:
    # Before any key exists, auth is off (GATEWAY_AUTH_REQUIRED unset): the first key turns it on.
    assert httpx.get(f"{gateway}/v1/models").status_code == 200
    created = admin(redis, "create", "--name", "tests")
    assert created.startswith("sk-gw-")
    return created


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
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
