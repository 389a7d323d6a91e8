"""The gateway's OpenAI API and passthroughs, driven by the official `openai` client.

Bodies are also checked against the `openai` package's own models (strict
validation, not the client's lenient parsing).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types import CreateEmbeddingResponse, ImagesResponse, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam

from tests.helpers.gateway_fakes import PNG_1X1
from tests.helpers.servers import RunningRedis, RunningServer
from tests.integration.gateway_support import WEATHER_TOOL, WEATHER_TURNS, gateway_stack

Stack = tuple[RunningServer, RunningServer, RunningRedis]
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Who invented the telephone?"}
]
MODELS = [
    ("auto", "chat"),
    ("fake-moe", "chat"),
    ("all-MiniLM-L6-v2", "embedding"),
    ("diffusion", "image"),
    ("gan", "image"),
]


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


def _last_call(fake: str, path: str) -> dict[str, Any]:
    calls = [r for r in httpx.get(f"{fake}/requests").json() if r["path"] == path]
    body: dict[str, Any] = calls[-1]["body"]
    return body


def _last_dispatch(fake: str) -> dict[str, Any]:
    return _last_call(fake, "/v1/dispatch")


def test_models_list_every_served_model_with_its_kind(client: openai.OpenAI, gateway: str) -> None:
    assert [(m.id, (m.model_extra or {})["kind"]) for m in client.models.list()] == MODELS
    body = httpx.get(f"{gateway}/v1/models").json()
    for card in body["data"]:
        Model.model_validate(card)
    aliases = {card["id"]: card["aliases"] for card in body["data"]}
    assert aliases["fake-moe"] == ["gpt-4o-mini", "gpt-3.5-turbo"]
    assert aliases["diffusion"] == ["dall-e-2", "dall-e-3"]


def test_models_are_retrieved_by_id_or_alias(client: openai.OpenAI, gateway: str) -> None:
    assert client.models.retrieve("fake-moe").id == "fake-moe"
    by_alias = client.models.retrieve("text-embedding-3-small")
    assert by_alias.id == "all-MiniLM-L6-v2"
    assert (by_alias.model_extra or {})["kind"] == "embedding"
    assert client.models.retrieve("dall-e-3").id == "diffusion"
    Model.model_validate(httpx.get(f"{gateway}/v1/models/gpt-4o-mini").json())
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("gpt-5")
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"model": "gpt-5", "messages": QUESTION}),
        ("/v1/chat/completions", {"model": "dall-e-2", "messages": QUESTION}),
        ("/v1/embeddings", {"model": "text-embedding-3-large", "input": "hi"}),
        ("/v1/embeddings", {"model": "fake-moe", "input": "hi"}),
        ("/v1/images/generations", {"model": "dall-e-4", "prompt": "a bag"}),
        ("/v1/images/generations", {"model": "gpt-4o-mini", "prompt": "a bag"}),
    ],
)
def test_unknown_models_are_404_model_not_found(
    gateway: str, path: str, body: dict[str, Any]
) -> None:
    response = httpx.post(f"{gateway}{path}", json=body)
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "not_found_error",
        "model_not_found",
        "model",
    )
    assert repr(body["model"]) in error["message"]
    assert error["service"] == "gateway"


def test_openai_default_names_reach_the_platform_models(client: openai.OpenAI, fake: str) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=QUESTION)
    assert _last_call(fake, "/v1/chat/completions")["model"] == "fake-moe"
    assert completion.model == "fake-moe"  # the model that served it
    embedded = client.embeddings.create(input="hi", model="text-embedding-ada-002")
    assert _last_call(fake, "/v1/embeddings")["model"] == "all-MiniLM-L6-v2"
    assert embedded.model == "all-MiniLM-L6-v2"
    client.images.generate(prompt="a bag", model="dall-e-2", response_format="b64_json")
    sent = _last_call(fake, "/v1/images/generations")
    assert (sent["model"], sent["response_format"]) == ("diffusion", "b64_json")


def test_direct_model_bodies_validate_against_openai_models(gateway: str) -> None:
    url = f"{gateway}/v1/chat/completions"
    answer = httpx.post(url, json={"model": "gpt-3.5-turbo", "messages": QUESTION})
    ChatCompletion.model_validate(answer.json())
    body = {"model": "fake-moe", "messages": QUESTION, "stream": True}
    with httpx.stream("POST", url, json=body) as response:
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(d) for d in data[:-1]]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello there"
    embedded = httpx.post(
        f"{gateway}/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "x"}
    )
    CreateEmbeddingResponse.model_validate(embedded.json())
    images = httpx.post(
        f"{gateway}/v1/images/generations", json={"prompt": "a bag", "response_format": "b64_json"}
    )
    ImagesResponse.model_validate(images.json())


def test_tools_structured_output_and_logprobs_pass_to_moe_unchanged(
    client: openai.OpenAI, fake: str
) -> None:
    messages = WEATHER_TURNS
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    fields: dict[str, Any] = {
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": schema, "strict": True},
        },
        "logprobs": True,
        "top_logprobs": 3,
    }
    for stream in (False, True):
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=stream, **fields
        )
        if stream:
            list(answer)
        sent = _last_call(fake, "/v1/chat/completions")
        assert sent["messages"] == messages
        assert {name: sent[name] for name in fields} == fields


def test_a_grammar_goes_to_the_model_named_and_is_refused_for_auto(
    client: openai.OpenAI, fake: str
) -> None:
    grammar = {"syntax": "lark", "definition": 'start: "yes" | "no"'}
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Hi"}],
        extra_body={"grammar": grammar},
    )
    assert _last_call(fake, "/v1/chat/completions")["grammar"] == grammar
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "Hi"}],
            extra_body={"grammar": grammar},
        )
    assert refused.value.code == "unsupported_for_plan"
    assert refused.value.param == "grammar"


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
    assert "1. *Telephone* (wiki): Alexander Graham Bell" in content
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
    assert result.data is not None and len(result.data) == 2
    assert result.data[0].b64_json and result.data[0].b64_json.startswith("iVBOR")
    assert result.data[0].url is None


def test_image_urls_are_served_while_signed(client: openai.OpenAI, fake: str) -> None:
    # OpenAI's default format is a URL: the gateway keeps the PNG and signs a link to it.
    result = client.images.generate(prompt="a handbag", n=2)
    assert _last_call(fake, "/v1/images/generations")["response_format"] == "b64_json"
    assert result.data is not None
    urls = [image.url or "" for image in result.data]
    assert len(set(urls)) == 2 and all(image.b64_json is None for image in result.data)
    served = httpx.get(urls[0])  # no API key needed
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/png"
    assert served.content == base64.b64decode(PNG_1X1)
    tampered = urls[0].replace("/images/default/", "/images/other/")
    forged = re.sub(r"signature=[0-9a-f]{4}", "signature=0000", urls[1])
    for url in (tampered, forged):
        refused = httpx.get(url)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "invalid_signature"


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"size": "1792x1024"}, "size", "invalid_size"),
        ({"response_format": "webp"}, "response_format", None),
        ({"style": "vivid"}, "style", "unsupported_parameter"),
        ({"quality": "hd"}, "quality", "unsupported_parameter"),
    ],
)
def test_image_options_not_served_are_400(
    gateway: str, body: dict[str, Any], param: str, code: str | None
) -> None:
    response = httpx.post(f"{gateway}/v1/images/generations", json={"prompt": "a bag", **body})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code
    if param == "size":
        assert "256x256, 512x512, 1024x1024" in error["message"]


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
    assert [m["id"] for m in body["data"]] == [m for m, kind in MODELS if m != "fake-moe"]
    assert json.dumps(body)  # a plain JSON list, no error
