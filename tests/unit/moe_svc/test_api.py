"""The OpenAI-compatible API in-process, on a tiny random model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from moe_svc.app import create_app
from moe_svc.settings import MoeSettings
from tests.helpers.tiny_llm import make_tiny_llm

MODEL = "tiny-moe"


def _client(settings: MoeSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").json()
            time.sleep(0.05)
        yield client


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llm(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def client(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = MoeSettings(
        model_dir=model_dir,
        served_model_name=MODEL,
        data_dir=tmp_path_factory.mktemp("data"),
        max_context=128,
        max_batch_size=4,
        num_threads=1,
        log_json=False,
    )
    yield from _client(settings)


def _chat(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 12,
        "temperature": 0,
    }
    return {**body, **overrides}


def _events(response: Any) -> list[Any]:
    lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    return [line[6:] if line == "data: [DONE]" else json.loads(line[6:]) for line in lines]


def test_chat_completion_with_usage(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=_chat())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    prompt = client.post(
        "/v1/tokenize",
        json={
            "text": "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
            "<|im_start|>assistant\n"
        },
    ).json()
    usage = body["usage"]
    assert usage["prompt_tokens"] == prompt["count"]
    assert 1 <= usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_streamed_chat_equals_non_streamed(client: TestClient) -> None:
    whole = client.post("/v1/chat/completions", json=_chat()).json()
    body = _chat(stream=True, stream_options={"include_usage": True})
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _events(r)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == whole["choices"][0]["message"]["content"]
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finishes[-1] == whole["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]


def test_n_choices_and_expert_usage(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions", json=_chat(n=3, temperature=1.0, seed=1, return_experts=True)
    )
    body = r.json()
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert len({c["message"]["content"] for c in body["choices"]}) > 1  # different seeds
    assert body["usage"]["completion_tokens"] > 12  # three choices counted
    experts = body["experts"]
    assert len(experts) == 3 and len(experts[0]["per_layer"]) == 2  # 2 layers
    assert all(len(layer) == 4 for layer in experts[0]["per_layer"])  # 4 experts


def test_text_completion_stream_and_echo(client: TestClient) -> None:
    r = client.post(
        "/v1/completions",
        json={"model": MODEL, "prompt": "Hello", "max_tokens": 5, "temperature": 0, "echo": True},
    )
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"].startswith("Hello")
    assert body["usage"]["completion_tokens"] <= 5
    with client.stream(
        "POST",
        "/v1/completions",
        json={"model": MODEL, "prompt": "Hello", "max_tokens": 5, "temperature": 0, "stream": True},
    ) as s:
        events = _events(s)
    streamed = "".join(e["choices"][0]["text"] for e in events[:-1])
    assert "Hello" + streamed == body["choices"][0]["text"]


def test_models_tokenize_and_expert_stats(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == MODEL
    assert models["data"][0]["max_model_len"] == 128
    tokens = client.post("/v1/tokenize", json={"text": "Hello world"}).json()
    assert tokens["count"] == len(tokens["tokens"]) > 0
    client.post("/v1/chat/completions", json=_chat())
    stats = client.get("/v1/experts/stats").json()
    assert stats["num_layers"] == 2 and stats["num_experts"] == 4 and stats["top_k"] == 2
    assert stats["tokens"] > 0
    assert all(sum(layer) == 2 * stats["tokens"] for layer in stats["counts"])
    assert len(stats["balance"]) == 2 and 0 < stats["mean_entropy"] <= 1


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"messages": []}, "messages"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 500}, "max_tokens"),  # prompt + 500 > the 128-token context
        ({"messages": [{"role": "user", "content": "Hello " * 200}]}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ],
)
def test_bad_requests_get_400_in_the_shared_shape(
    client: TestClient, overrides: dict[str, Any], param: str
) -> None:
    r = client.post("/v1/chat/completions", json=_chat(**overrides))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["service"] == "moe_svc" and error["request_id"]
    # the engine keeps serving
    assert client.post("/v1/chat/completions", json=_chat(max_tokens=2)).status_code == 200


def test_unknown_model_is_a_404_model_not_found(client: TestClient) -> None:
    for r in (
        client.post("/v1/chat/completions", json=_chat(model="gpt-4")),
        client.post("/v1/completions", json={"model": "gpt-4", "prompt": "hi"}),
        client.get("/v1/models/gpt-4"),
    ):
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "model_not_found"
    card = client.get(f"/v1/models/{MODEL}").json()
    assert card["id"] == MODEL and card["object"] == "model"


def test_malformed_json_is_a_400(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_json"


def test_metrics_show_latency_tokens_and_batch(client: TestClient) -> None:
    client.post("/v1/chat/completions", json=_chat(max_tokens=4))
    text = client.get("/metrics").text
    for name in (
        "moe_time_to_first_token_seconds_bucket",
        "moe_inter_token_latency_seconds_bucket",
        "moe_generated_tokens_total",
        "moe_batch_size",
    ):
        assert name in text
    generated = [ln for ln in text.splitlines() if ln.startswith("moe_generated_tokens_total")]
    assert float(generated[0].split()[-1]) >= 4


def test_full_queue_is_a_503_overloaded_with_retry_after(model_dir: Path, tmp_path: Path) -> None:
    settings = MoeSettings(
        model_dir=model_dir, data_dir=tmp_path, max_queue=0, num_threads=1, log_json=False
    )
    for client in _client(settings):
        for stream in (False, True):
            r = client.post("/v1/chat/completions", json=_chat(model=model_dir.name, stream=stream))
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "overloaded"
            assert r.json()["error"]["type"] == "service_unavailable"
            # nothing was ever admitted: the estimate is the queue's deadline
            assert r.headers["retry-after"] == "30"


def test_not_ready_until_the_model_loads(tmp_path: Path) -> None:
    settings = MoeSettings(model_dir=tmp_path / "missing", data_dir=tmp_path, log_json=False)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 10
        while "failed" not in (r := client.post("/v1/chat/completions", json=_chat())).text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "model_loading"
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["model"]["status"] == "down"
