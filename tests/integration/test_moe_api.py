"""moe_svc as a real server (uvicorn process) on a tiny random model: the official openai
client, streaming, cancellation on disconnect, bad requests next to good ones."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.helpers.servers import RunningServer, start_service
from tests.helpers.tiny_llm import make_tiny_llm

MODEL = "tiny-moe"


def _wait_ready(server: RunningServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(server.url + "/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, server.logs()[-3000:]
        time.sleep(0.1)


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root: Path = tmp_path_factory.mktemp("moe_api")
    model_dir = make_tiny_llm(root / "model", max_position_embeddings=4096)
    env = {
        "MOE_MODEL_DIR": str(model_dir),
        "MOE_SERVED_MODEL_NAME": MODEL,
        "MOE_NUM_THREADS": "1",
        "MOE_MAX_CONTEXT": "4096",
        "MOE_MAX_BATCH_SIZE": "4",
    }
    server = start_service("moe_svc", root / "logs", env=env)
    try:
        _wait_ready(server, 60)
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(moe: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=moe.url + "/v1", api_key="unused", max_retries=0)


def _metric(server: RunningServer, name: str, label: str = "") -> float:
    text = httpx.get(server.url + "/metrics").text
    values = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name) and label in line
    ]
    return sum(values)


def test_openai_client_chat_streamed_and_not(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "What is the capital of France?"}
    ]
    whole = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=16,
        temperature=0,
    )
    content = whole.choices[0].message.content
    assert content and whole.usage is not None
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == content
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert client.models.list().data[0].id == MODEL


def test_openai_client_sees_errors_as_bad_requests(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert isinstance(info.value.body, dict) and info.value.body["param"] == "model"
    assert info.value.code == "model_not_found"
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=MODEL, prompt="hi", max_tokens=5000)
    ok = client.completions.create(model=MODEL, prompt="hi", max_tokens=3, temperature=0)
    assert ok.choices[0].finish_reason in ("stop", "length")


def test_client_disconnect_aborts_the_generation(moe: RunningServer) -> None:
    aborted = _metric(moe, "moe_requests_finished_total", 'finish_reason="abort"')
    body = {
        "model": MODEL,
        "prompt": "Hello",
        "max_tokens": 4000,
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", moe.url + "/v1/completions", json=body, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # first token: generation is running; leave
    deadline = time.monotonic() + 10
    while _metric(moe, "moe_requests_finished_total", 'finish_reason="abort"') <= aborted:
        assert time.monotonic() < deadline, "the engine kept generating for a gone client"
        time.sleep(0.05)
    while _metric(moe, "moe_batch_size") != 0:  # the gauge is set at the end of the step
        assert time.monotonic() < deadline, "the aborted row was not freed"
        time.sleep(0.05)
    # and it serves the next request
    r2 = httpx.post(moe.url + "/v1/completions", json={**body, "stream": False, "max_tokens": 4})
    assert r2.status_code == 200 and r2.json()["usage"]["completion_tokens"] == 4


def test_non_streamed_request_is_aborted_when_its_client_leaves(moe: RunningServer) -> None:
    aborted = _metric(moe, "moe_requests_finished_total", 'finish_reason="abort"')
    counted = _metric(moe, "moe_requests_aborted_total")
    body = {"model": MODEL, "prompt": "Hello", "max_tokens": 4000, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(moe.url + "/v1/completions", json=body, timeout=httpx.Timeout(5, read=0.5))
    left = time.monotonic()
    while _metric(moe, "moe_requests_finished_total", 'finish_reason="abort"') <= aborted:
        assert time.monotonic() - left < 10, "the engine kept generating for a gone client"
        time.sleep(0.05)
    # Within about a second of the client leaving (generating the rest takes seconds).
    assert time.monotonic() - left < 3
    assert _metric(moe, "moe_requests_aborted_total") == counted + 1
