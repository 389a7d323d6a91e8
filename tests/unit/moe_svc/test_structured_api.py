"""Structured outputs, tool calls and logprobs through the API, on a tiny random model.

A random model writes gibberish, so the schemas here have finite languages (enums,
booleans): whatever it picks, the grammar leads it to a complete, valid object.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai.types
import openai.types.chat
import pytest
from fastapi.testclient import TestClient

from moe_svc.settings import MoeSettings
from tests.helpers.tiny_llm import make_tiny_llm
from tests.integration.gateway_support import WEATHER_TURNS
from tests.unit.moe_svc.test_api import MODEL, _chat, _client, _events

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"enum": ["Paris", "Rome", "Oslo"]},
        "unit": {"enum": ["celsius", "fahrenheit"]},
        "detailed": {"type": "boolean"},
    },
    "required": ["city", "unit", "detailed"],
    "additionalProperties": False,
}
TOOLS: list[dict[str, Any]] = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {
                "type": "object",
                "properties": {"zone": {"enum": ["utc", "cet"]}},
                "required": ["zone"],
                "additionalProperties": False,
            },
        },
    },
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = MoeSettings(
        model_dir=make_tiny_llm(tmp_path_factory.mktemp("tiny"), max_position_embeddings=2048),
        served_model_name=MODEL,
        data_dir=tmp_path_factory.mktemp("data"),
        max_context=2048,
        max_batch_size=4,
        num_threads=1,
        log_json=False,
    )
    yield from _client(settings)


def _without_special(text: str) -> str:
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        text = text.replace(special, "")
    return text


def _post(client: TestClient, **overrides: Any) -> dict[str, Any]:
    r = client.post("/v1/chat/completions", json=_chat(**overrides))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    openai.types.chat.ChatCompletion.model_validate(body, strict=False)
    return body


def _stream(client: TestClient, **overrides: Any) -> list[dict[str, Any]]:
    with client.stream("POST", "/v1/chat/completions", json=_chat(stream=True, **overrides)) as r:
        assert r.status_code == 200
        events = _events(r)
    assert events[-1] == "[DONE]"
    chunks: list[dict[str, Any]] = events[:-1]
    for i, chunk in enumerate(chunks):
        openai.types.chat.ChatCompletionChunk.model_validate(chunk)
        for choice in chunk["choices"]:
            # a string role on a choice's first chunk only, never null
            assert ("role" in choice["delta"]) == (i == 0), chunk
            assert choice["delta"].get("role", "assistant") == "assistant"
    return chunks


def test_json_schema_replies_validate_streamed_and_not(client: TestClient) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER, "strict": True}}
    body = _post(client, response_format=fmt, max_tokens=60, n=2, temperature=1.0, seed=3)
    for choice in body["choices"]:
        assert choice["finish_reason"] == "stop" and choice["message"]["refusal"] is None
        jsonschema.validate(json.loads(choice["message"]["content"]), WEATHER)
    chunks = _stream(client, response_format=fmt, max_tokens=60)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert (
        text
        == _post(client, response_format=fmt, max_tokens=60)["choices"][0]["message"]["content"]
    )
    jsonschema.validate(json.loads(text), WEATHER)


def test_a_lark_grammar_shapes_the_reply_streamed_and_not(client: TestClient) -> None:
    body = _post(client, grammar=YES_NO, max_tokens=20, n=3, temperature=1.0, seed=5)
    for choice in body["choices"]:
        assert choice["message"]["content"] in ("Answer: yes.", "Answer: no.")
        assert choice["finish_reason"] == "stop"
    chunks = _stream(client, grammar=YES_NO, max_tokens=20)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text in ("Answer: yes.", "Answer: no.")


def test_required_tool_call_streamed_as_openai_does(client: TestClient) -> None:
    body = _post(client, tools=TOOLS, tool_choice="required", max_tokens=400)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert calls and all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for call in calls:
        jsonschema.validate(
            json.loads(call["function"]["arguments"]), schemas[call["function"]["name"]]
        )

    chunks = _stream(client, tools=TOOLS, tool_choice="required", max_tokens=400)
    streamed: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for delta in chunk["choices"][0]["delta"].get("tool_calls", []) if chunk["choices"] else []:
            call = streamed.setdefault(delta["index"], {"name": "", "arguments": "", "id": ""})
            if "id" in delta:  # the first delta of a call: id, type and name
                assert not call["id"] and delta["type"] == "function"
                call["id"], call["name"] = delta["id"], delta["function"]["name"]
            call["arguments"] += delta["function"].get("arguments") or ""
    assert [c["finish_reason"] for c in (x["choices"][0] for x in chunks if x["choices"])][-1] == (
        "tool_calls"
    )
    assert [(c["name"], c["arguments"]) for c in streamed.values()] == [
        (c["function"]["name"], c["function"]["arguments"]) for c in calls
    ]


def test_named_tool_choice_and_one_call_without_parallel(client: TestClient) -> None:
    named = {"type": "function", "function": {"name": "get_time"}}
    body = _post(
        client, tools=TOOLS, tool_choice=named, parallel_tool_calls=False, max_tokens=300, seed=1
    )
    calls = body["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_time"]
    assert json.loads(calls[0]["function"]["arguments"])["zone"] in ("utc", "cet")


def test_tool_results_continue_the_conversation(client: TestClient) -> None:
    body = _post(client, messages=WEATHER_TURNS, tools=TOOLS, tool_choice="none", max_tokens=8)
    assert body["choices"][0]["message"]["content"] is not None
    assert body["choices"][0]["message"]["tool_calls"] is None


def test_chat_logprobs_are_the_sampling_distribution(client: TestClient) -> None:
    body = _post(client, logprobs=True, top_logprobs=3, max_tokens=10)
    choice = body["choices"][0]
    content = choice["logprobs"]["content"]
    eos = 1 if choice["finish_reason"] == "stop" else 0
    assert len(content) == body["usage"]["completion_tokens"] - eos
    for entry in content:
        top = entry["top_logprobs"]
        assert len(top) == 3 and top[0]["logprob"] >= top[1]["logprob"] >= top[2]["logprob"]
        assert entry["logprob"] == top[0]["logprob"]  # greedy: the likeliest token
        assert bytes(entry["bytes"]).decode("utf-8", "replace") == entry["token"]
    joined = "".join(e["token"] for e in content)
    assert _without_special(joined) == choice["message"]["content"]
    # top_p: the tokens kept renormalise, the rest are cut
    nucleus = _post(
        client, logprobs=True, top_logprobs=20, max_tokens=4, top_p=0.3, seed=2, temperature=1.0
    )
    for entry in nucleus["choices"][0]["logprobs"]["content"]:
        kept = [t["logprob"] for t in entry["top_logprobs"] if t["logprob"] > -9999]
        assert math.isclose(sum(math.exp(lp) for lp in kept), 1.0, rel_tol=1e-4)
    chunks = _stream(client, logprobs=True, top_logprobs=3, max_tokens=10)
    streamed = [
        e
        for c in chunks
        if c["choices"]
        for e in (c["choices"][0]["logprobs"] or {}).get("content") or []
    ]
    assert streamed == content


def test_completion_logprobs_in_the_legacy_shape(client: TestClient) -> None:
    r = client.post(
        "/v1/completions",
        json={"model": MODEL, "prompt": "Hello", "max_tokens": 5, "temperature": 0, "logprobs": 2},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    openai.types.Completion.model_validate(body)
    logprobs = body["choices"][0]["logprobs"]
    # the text skips special tokens; logprobs name them
    assert _without_special("".join(logprobs["tokens"])) == body["choices"][0]["text"]
    assert all(len(top) <= 2 for top in logprobs["top_logprobs"])
    assert logprobs["text_offset"][0] == 0


BAD_SCHEMA = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}
# A finite language: whatever the random model picks, the reply is one of these.
YES_NO = {"syntax": "lark", "definition": 'start: "Answer: " ("yes" | "no") "."'}
NAMED_UNKNOWN = {"type": "function", "function": {"name": "nope"}}


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"response_format": BAD_SCHEMA}, "response_format"),
        ({"grammar": {"definition": "start: undefined_rule"}}, "grammar"),
        ({"grammar": YES_NO, "tools": TOOLS}, "grammar"),
        ({"grammar": YES_NO, "response_format": {"type": "json_object"}}, "grammar"),
        ({"grammar": {"syntax": "ebnf", "definition": "x"}}, "grammar.syntax"),
        ({"tools": TOOLS, "tool_choice": NAMED_UNKNOWN}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"5": 10}}, "logit_bias"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"functions": [{"name": "f"}]}, "functions"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_a_400(
    client: TestClient, overrides: dict[str, Any], param: str
) -> None:
    r = client.post("/v1/chat/completions", json=_chat(**overrides))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
