"""The gateway's OpenAI API and passthroughs, driven by the official `openai` client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.helpers.servers import RunningRedis, RunningServer
from tests.integration.gateway_support import gateway_stack

Stack = tuple[RunningServer, RunningServer, RunningRedis]
QUESTION = [{"role": "user", "content": "Who invented the telephone?"}]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(tmp_path_factory.mktemp("gateway_openai")) as servers:
        yield servers


@pytest.fixture(scope="module")
def gateway(stack: Stack) -> str:
    return stack[0].url


@pytest.fixture(scope="module")
def fake(stack: Stack) -> str:
    return stack[1].url


@pytest.fixture(scope="module")
def client(gateway: str) -> openai.OpenAI:
    # No key exists in this Redis: auth is off, any key is accepted.
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0)


def _last_dispatch(fake: str) -> dict[str, object]:
    calls = [r for r in httpx.get(f"{fake}/requests").json() if r["path"] == "/v1/dispatch"]
    return calls[-1]["body"]


def test_models_list_auto_and_moe_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["auto", "fake-moe"]


def test_auto_answer_is_formatted_verified_and_carries_the_pipeline(
    client: openai.OpenAI, fake: str
) -> None:
    completion = client.chat.completions.create(
        model="auto", messages=QUESTION, extra_body={"session_id": "s1"}, user="u1"
    )
    content = completion.choices[0].message.content or ""
    assert "in 1876 [1]." in content
    assert "[7]" not in content  # cites a source that does not exist: removed
    assert "**Sources**" in content
    assert "1. *Telephone*: Alexander Graham Bell" in content
    extra = completion.model_extra or {}
    pipeline = extra["pipeline"]
    assert pipeline["intent"] == "factual"
    assert pipeline["verification"]["removed"] == [7]
    assert pipeline["verification"]["citations"][0]["semantic"] == 0.9
    assert extra["message_id"].endswith("-assistant")
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    sent = _last_dispatch(fake)
    assert sent["session_id"] == "s1"
    assert sent["user"] == "u1"


def test_auto_stream_gives_chunks_sources_pipeline_and_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="auto", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Bell patented the telephone in 1876 [1].")
    assert "**Sources**" in text
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1
    pipeline = (finals[0].model_extra or {})["pipeline"]
    assert pipeline["sources"][0]["doc_id"] == "bell"
    assert pipeline["verification"]["removed"] == [7]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


def test_stream_ends_with_done(gateway: str) -> None:
    body = {"model": "auto", "messages": QUESTION, "stream": True}
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert all(line.startswith("data: ") for line in lines)


def test_moe_models_go_straight_to_moe(client: openai.OpenAI, fake: str) -> None:
    completion = client.chat.completions.create(model="fake-moe", messages=QUESTION)
    assert completion.choices[0].message.content == "Hello there"
    stream = client.chat.completions.create(
        model="fake-moe", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there"
    assert chunks[-1].usage is not None
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=QUESTION)


def test_client_disconnect_cancels_the_upstream_stream(gateway: str, fake: str) -> None:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "slow please"}],
        "stream": True,
    }
    with httpx.stream("POST", f"{gateway}/v1/chat/completions", json=body) as response:
        seen = 0
        for line in response.iter_lines():
            if '"content": "w' in line:
                seen += 1
            if seen >= 3:
                break
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = httpx.get(f"{fake}/state").json()
        if state["slow_cancelled"]:
            break
        time.sleep(0.1)
    assert state["slow_started"] == 1
    assert state["slow_cancelled"] == 1
    assert state["slow_finished"] == 0


def test_embeddings_pass_to_rag(client: openai.OpenAI) -> None:
    result = client.embeddings.create(
        input=["a", "b"], model="all-MiniLM-L6-v2", encoding_format="float"
    )
    assert [d.embedding for d in result.data] == [[0.5, 0.25, 0.125]] * 2


def test_images_pass_to_creative(client: openai.OpenAI) -> None:
    result = client.images.generate(prompt="a handbag", n=2, response_format="b64_json")
    assert len(result.data) == 2
    assert result.data[0].b64_json and result.data[0].b64_json.startswith("iVBOR")


def test_documents_pass_to_rag_as_json_and_multipart(gateway: str, fake: str) -> None:
    url = f"{gateway}/v1/collections/docs/documents"
    as_json = httpx.post(url, json={"documents": [{"id": "d1", "text": "hello"}]})
    assert as_json.status_code == 200
    assert as_json.json()["ids"] == ["d1"]
    upload = httpx.post(url, files={"file": ("notes.txt", b"some notes", "text/plain")})
    assert upload.status_code == 200
    assert upload.json()["ids"] == ["notes.txt"]
    calls = [r for r in httpx.get(f"{fake}/requests").json() if r["path"] == "/documents/docs"]
    assert calls[-1]["body"] == {"file": "some notes"}


def test_feedback_is_stored_and_readable(gateway: str) -> None:
    rating = {"session_id": "s9", "message_id": "dsp-1-assistant", "rating": -1, "comment": "meh"}
    assert httpx.post(f"{gateway}/v1/feedback", json=rating).status_code == 201
    listed = httpx.get(f"{gateway}/v1/feedback", params={"session_id": "s9"}).json()
    assert [(f["rating"], f["comment"]) for f in listed["data"]] == [(-1, "meh")]


def test_models_survive_moe_being_down(tmp_path_factory: pytest.TempPathFactory) -> None:
    log_dir = tmp_path_factory.mktemp("gateway_no_moe")
    with gateway_stack(log_dir, {"GATEWAY_MOE_URL": "http://127.0.0.1:9"}) as (gw, _, _):
        body = httpx.get(f"{gw.url}/v1/models").json()
    assert [m["id"] for m in body["data"]] == ["auto"]
    assert json.dumps(body)  # a plain JSON list, no error
