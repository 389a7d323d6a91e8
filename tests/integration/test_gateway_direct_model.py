"""A direct model id through the gateway to the real moe_svc: structured outputs, tools and
logprobs reach the client, named by an OpenAI alias, in OpenAI's shapes.

moe_svc serves the dense SmolLM2 of the default build (the same tokenizer and chat template
as the default model, loaded in seconds): what is tested is the gateway's passage, not the
model. Bodies and chunks are checked against the `openai` package's own models (strict).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from moe_svc.build_default import DENSE_NAME, build
from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready
from tests.integration.gateway_support import (
    ASK_WEATHER,
    WEATHER_TOOL,
    WEATHER_TURNS,
    gateway_stack,
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log_dir = tmp_path_factory.mktemp("gateway_direct_model")
    # Built into ./var/models with the default model (reused while up to date).
    model_dir = build(REPO_ROOT / "var" / "models").parent / DENSE_NAME

    def moe(_: RunningServer) -> RunningServer:
        env = {"MOE_MODEL_DIR": str(model_dir), "MOE_DTYPE": "float32"}
        server = start_service("moe_svc", log_dir, env=env)
        wait_ready(server, timeout_s=600)
        return server

    with gateway_stack(log_dir, real={"moe_svc": moe}) as (gw, _, _):
        yield gw.url


@pytest.fixture(scope="module")
def served(gateway: str) -> str:
    """The id moe_svc serves (what every answer must name)."""
    cards = httpx.get(f"{gateway}/v1/models").json()["data"]
    model: str = next(c["id"] for c in cards if c["kind"] == "chat" and c["id"] != "auto")
    return model


def _chat(gateway: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{gateway}/v1/chat/completions", json=body, timeout=300)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    ChatCompletion.model_validate(answer)
    assert answer["choices"][0]["message"]["refusal"] is None
    return answer


def _stream(gateway: str, **body: Any) -> list[ChatCompletionChunk]:
    url = f"{gateway}/v1/chat/completions"
    with httpx.stream("POST", url, json={**body, "stream": True}, timeout=300) as response:
        assert response.status_code == 200
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    for raw in data[:-1]:
        # A role, where a delta carries one, is a string: never null.
        assert all(c["delta"].get("role", "assistant") is not None
                   for c in json.loads(raw)["choices"])  # fmt: skip
    return [ChatCompletionChunk.model_validate_json(raw) for raw in data[:-1]]


def test_json_schema_through_an_alias(gateway: str, served: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0, timeout=300)
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Name a city in France and its country."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "place", "schema": schema, "strict": True},
        },
        max_tokens=60,
        temperature=0,
    )
    assert completion.model == served  # the model that served it, not the alias
    ChatCompletion.model_validate(completion.model_dump())
    parsed = json.loads(completion.choices[0].message.content or "")
    assert set(parsed) == {"city", "country"}
    assert all(isinstance(value, str) for value in parsed.values())


# The weather tool with no other argument allowed: the small model, free to add properties,
# may run on until max_tokens before it closes the object.
CLOSED_WEATHER_TOOL = json.loads(json.dumps(WEATHER_TOOL))
CLOSED_WEATHER_TOOL["function"]["parameters"]["additionalProperties"] = False


def test_a_required_tool_call_streamed(gateway: str) -> None:
    body: dict[str, Any] = {
        "model": "gpt-3.5-turbo",
        "messages": [ASK_WEATHER],
        "tools": [CLOSED_WEATHER_TOOL],
        "tool_choice": "required",
        "max_tokens": 120,
        "temperature": 0,
    }
    chunks = _stream(gateway, **body)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    calls = [call for delta in deltas for call in delta.tool_calls or []]
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    arguments = "".join(call.function.arguments or "" for call in calls if call.function)
    assert isinstance(json.loads(arguments)["city"], str)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_the_tool_result_turn_with_logprobs(gateway: str) -> None:
    body: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": WEATHER_TURNS,
        "tools": [WEATHER_TOOL],
        "max_tokens": 6,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    choice = _chat(gateway, **body)["choices"][0]
    assert choice["message"]["content"]
    tokens = choice["logprobs"]["content"]
    assert tokens and all(len(t["top_logprobs"]) == 2 and t["logprob"] <= 0 for t in tokens)
    chunks = _stream(gateway, **body)
    streamed = [
        token for c in chunks if c.choices and c.choices[0].logprobs
        for token in c.choices[0].logprobs.content or []
    ]  # fmt: skip
    assert [t.token for t in streamed] == [t["token"] for t in tokens]  # greedy: the same tokens
