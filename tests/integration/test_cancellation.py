"""A client that leaves stops the work behind it, and pays for what it was sent.

Real servers: the gateway (real Redis, a real API key), router_svc, reasoning_svc
and moe_svc on a tiny random model that never ends an answer by itself, so a
generation runs until its max_tokens (seconds for thousands) unless it is aborted.
reasoning_svc thinks with `slow_model`, a stand-in that counts its calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_sync
from redis import asyncio as aioredis

from gateway.keys import KeyStore
from tests.helpers.servers import (
    RunningRedis,
    RunningServer,
    start_fake,
    start_redis,
    start_service,
    wait_ready,
)
from tests.helpers.tiny_llm import make_tiny_llm

MODEL = "tiny-moe"
LONG = 3000  # max_tokens of an answer that would run for seconds
CHAT_TEXT = "hello! how are you today?"
REASONING_TEXT = "A farmer has 30 heads and 74 legs. How many cows?"


@dataclass
class Stack:
    gateway: RunningServer
    moe: RunningServer
    slow: RunningServer
    redis: RunningRedis


def _endless_model(root: Path) -> Path:
    """The tiny model with no end-of-sequence token: it writes until max_tokens."""
    path = make_tiny_llm(root / "model", max_position_embeddings=4096)
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": []}))
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "eos_token_id": None}))
    tokenizer = json.loads((path / "tokenizer_config.json").read_text())
    (path / "tokenizer_config.json").write_text(json.dumps({**tokenizer, "eos_token": None}))
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("cancellation")
    started: list[Any] = []
    try:
        redis = start_redis(root / "redis")
        started.append(redis)
        moe_env = {
            "MOE_MODEL_DIR": str(_endless_model(root)),
            "MOE_SERVED_MODEL_NAME": MODEL,
            "MOE_NUM_THREADS": "1",
            "MOE_MAX_CONTEXT": "4096",
            "MOE_MAX_BATCH_SIZE": "4",
        }
        moe = start_service("moe_svc", root, env=moe_env)
        started.append(moe)
        slow = start_fake("tests.helpers.slow_model", root, name="slow_model")
        started.append(slow)
        reasoning = start_service("reasoning_svc", root, upstreams={"moe_svc": slow.url})
        started.append(reasoning)
        router = start_service(
            "router_svc",
            root,
            upstreams={"moe_svc": moe.url, "reasoning_svc": reasoning.url},
            env={"ROUTER_LOG_JSON": "false"},
        )
        started.append(router)
        gateway = start_service(
            "gateway",
            root,
            upstreams={"router_svc": router.url, "moe_svc": moe.url},
            env={"GATEWAY_REDIS_URL": redis.url, "GATEWAY_LOG_JSON": "false"},
        )
        started.append(gateway)
        wait_ready(moe)
        yield Stack(gateway, moe, slow, redis)
    finally:
        for server in reversed(started):
            server.stop()


@dataclass
class Key:
    key: str
    id: str


@pytest.fixture
def key(stack: Stack) -> Key:
    """A fresh key per test, so that its token counters are the test's own."""

    async def create() -> Key:
        client = aioredis.from_url(stack.redis.url)
        try:
            key, record = await KeyStore(client).create(name="cancellation", tpm_limit=10_000_000)
        finally:
            await client.aclose()
        return Key(key, record.id)

    return asyncio.run(create())


def _headers(key: Key) -> dict[str, str]:
    return {"Authorization": f"Bearer {key.key}"}


def _chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def _metric(server: RunningServer, name: str) -> float:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def _aborted(stack: Stack) -> float:
    return _metric(stack.moe, "moe_requests_aborted_total")


def _until(check: Callable[[], bool], what: str, timeout_s: float = 5.0) -> float:
    """Seconds until `check()` holds; fails the test past `timeout_s`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, what
        time.sleep(0.05)
    return time.monotonic() - started


def _tokens_charged(stack: Stack, key: Key) -> int:
    """Every token charged to the key so far (the raw counts of its token windows)."""
    client = redis_sync.Redis.from_url(stack.redis.url)
    try:
        names = client.keys(f"gateway:rl:tok:{key.id}:*")
        return sum(int(client.get(name) or 0) for name in names)
    finally:
        client.close()


def _contents(lines: Iterator[str], wanted: int) -> list[dict[str, Any]]:
    """Chunks read until `wanted` of them carried content."""
    chunks: list[dict[str, Any]] = []
    with_content = 0
    for line in lines:
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        chunks.append(chunk)
        if any((c.get("delta") or {}).get("content") for c in chunk.get("choices") or []):
            with_content += 1
            if with_content == wanted:
                break
    return chunks


# --- leaving stops the generation -----------------------------------------------------------


@pytest.mark.parametrize("model", [MODEL, "auto"])
def test_leaving_a_stream_aborts_the_generation(stack: Stack, key: Key, model: str) -> None:
    before = _aborted(stack)
    body = _chat(model, CHAT_TEXT, max_tokens=LONG, stream=True)
    url = stack.gateway.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=_headers(key), timeout=30) as response:
        assert response.status_code == 200, response.read()
        assert _contents(response.iter_lines(), 3)  # generation is running; leave
    waited = _until(lambda: _aborted(stack) > before, "moe_svc kept generating for a gone client")
    assert waited < 3


@pytest.mark.parametrize("model", [MODEL, "auto"])
def test_leaving_a_non_streamed_request_aborts_the_generation(
    stack: Stack, key: Key, model: str
) -> None:
    before = _aborted(stack)
    body = _chat(model, CHAT_TEXT, max_tokens=LONG)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            stack.gateway.url + "/v1/chat/completions",
            json=body,
            headers=_headers(key),
            timeout=httpx.Timeout(10, read=1.5),
        )
    waited = _until(lambda: _aborted(stack) > before, "moe_svc kept generating for a gone client")
    assert waited < 3


def _slow_calls(stack: Stack) -> dict[str, Any]:
    calls: dict[str, Any] = httpx.get(stack.slow.url + "/calls", timeout=5).json()
    return calls


@pytest.mark.parametrize("stream", [False, True])
def test_leaving_stops_the_reasoning_run(stack: Stack, key: Key, stream: bool) -> None:
    # Each of the model's answers takes 5 s: the client leaves during the first.
    httpx.put(stack.slow.url + "/config", json={"delay_s": 5.0}).raise_for_status()
    url = stack.gateway.url + "/v1/chat/completions"
    body = _chat("auto", REASONING_TEXT, stream=stream)
    with (
        pytest.raises(httpx.ReadTimeout),
        httpx.stream(
            "POST", url, json=body, headers=_headers(key), timeout=httpx.Timeout(10, read=2.0)
        ) as response,
    ):
        for _ in response.iter_lines():
            pass
    assert _slow_calls(stack)["started"] == 1
    _until(
        lambda: _slow_calls(stack)["abandoned"] == 1,
        "reasoning_svc's model call went on after the client left",
        timeout_s=3,
    )
    time.sleep(1.0)
    calls = _slow_calls(stack)
    assert calls["started"] == 1 and calls["answered"] == 0


# --- max_tokens bounds reasoning --------------------------------------------------------------


def test_max_tokens_bounds_every_token_reasoning_writes(stack: Stack, key: Key) -> None:
    httpx.put(
        stack.slow.url + "/config", json={"delay_s": 0.0, "reply": "no program here"}
    ).raise_for_status()
    response = httpx.post(
        stack.gateway.url + "/v1/chat/completions",
        json=_chat("auto", REASONING_TEXT, max_tokens=40),
        headers=_headers(key),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    asked = _slow_calls(stack)["max_tokens"]
    assert asked and sum(asked) <= 40, asked


# --- what a client pays ------------------------------------------------------------------------


def test_a_stream_without_usage_is_charged_its_completion(stack: Stack, key: Key) -> None:
    body = _chat(MODEL, CHAT_TEXT, max_tokens=20, stream=True)
    url = stack.gateway.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=_headers(key), timeout=30) as response:
        assert response.status_code == 200
        prompt = _tokens_charged(stack, key)  # the admission charge; the answer's comes at the end
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    # The client did not ask for usage: no usage chunk reaches it.
    assert not any("usage" in json.loads(line[6:]) for line in lines[:-1])
    _until(lambda: _tokens_charged(stack, key) == prompt + 20, "the completion was not charged")


def test_a_stream_with_usage_shows_and_charges_it(stack: Stack, key: Key) -> None:
    body = _chat(
        MODEL, CHAT_TEXT, max_tokens=20, stream=True, stream_options={"include_usage": True}
    )
    url = stack.gateway.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=_headers(key), timeout=30) as response:
        prompt = _tokens_charged(stack, key)
        chunks = [
            json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")
        ]
    assert chunks[-1]["usage"]["completion_tokens"] == 20
    _until(lambda: _tokens_charged(stack, key) == prompt + 20, "the completion was not charged")


@pytest.mark.parametrize("model", [MODEL, "auto"])
def test_a_stream_left_early_is_charged_what_was_sent(stack: Stack, key: Key, model: str) -> None:
    body = _chat(model, CHAT_TEXT, max_tokens=LONG, stream=True)
    url = stack.gateway.url + "/v1/chat/completions"
    with httpx.stream("POST", url, json=body, headers=_headers(key), timeout=30) as response:
        prompt = _tokens_charged(stack, key)
        read = _contents(response.iter_lines(), 10)
    pieces = sum(1 for c in read for choice in c["choices"] if choice["delta"].get("content"))
    assert pieces == 10
    _until(lambda: _tokens_charged(stack, key) > prompt, "a stream left early was not charged")
    time.sleep(0.3)
    completion = _tokens_charged(stack, key) - prompt
    # What was sent (at least what was read), not the LONG tokens asked for.
    assert 10 <= completion < LONG
