"""moe_svc on the real default model: structured outputs, tool calls and LangChain.

Every body and stream chunk is checked against the official `openai` package's
models; JSON replies against their schemas; LangChain's `bind_tools` agent and
`with_structured_output` (both methods) run against the real server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessageFunctionToolCall,
)
from pydantic import BaseModel, Field

from creative_svc.ideation import ideas_schema, json_ideas_prompt, parse_json_ideas
from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready
from tests.integration.gateway_support import WEATHER_TOOL

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer", "minimum": 0, "maximum": 130},
        "city": {"type": "string", "maxLength": 40},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    logs: Path = tmp_path_factory.mktemp("moe_structured")
    env = {"MOE_DATA_DIR": str(REPO_ROOT / "var"), "MOE_DTYPE": "float32"}
    server = start_service("moe_svc", logs, env=env)
    try:
        wait_ready(server, timeout_s=600)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def model(moe: RunningServer) -> str:
    name: str = httpx.get(moe.url + "/v1/models").json()["data"][0]["id"]
    return name


def _chat(moe: RunningServer, body: dict[str, Any]) -> ChatCompletion:
    r = httpx.post(moe.url + "/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    raw = r.json()
    assert (
        raw["choices"][0]["message"]["refusal"] is None
        and "refusal" in raw["choices"][0]["message"]
    )
    return ChatCompletion.model_validate(raw)


def _chunks(moe: RunningServer, body: dict[str, Any]) -> list[ChatCompletionChunk]:
    chunks = []
    with httpx.stream(
        "POST", moe.url + "/v1/chat/completions", json={**body, "stream": True}, timeout=300
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                raw = json.loads(line[6:])
                for choice in raw["choices"]:
                    assert choice["delta"].get("role", "assistant") == "assistant"
                chunks.append(ChatCompletionChunk.model_validate(raw))
    return chunks


async def test_twenty_json_schema_requests_give_twenty_valid_objects(
    moe: RunningServer, model: str
) -> None:
    client = openai.AsyncOpenAI(base_url=moe.url + "/v1", api_key="unused", max_retries=0)
    fmt: Any = {
        "type": "json_schema",
        "json_schema": {"name": "person", "schema": PERSON, "strict": True},
    }

    async def one(i: int) -> str | None:
        reply = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": f"Invent person number {i}: name, age, city."}],
            response_format=fmt,
            temperature=0.8,
            seed=i,
            max_tokens=120,
        )
        assert reply.choices[0].finish_reason == "stop"
        return reply.choices[0].message.content

    replies = await asyncio.gather(*(one(i) for i in range(20)))  # batched together
    for text in replies:
        assert text is not None
        jsonschema.validate(json.loads(text), PERSON)


def test_json_object_is_always_json_streamed_and_not(moe: RunningServer, model: str) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Describe Paris as JSON."}],
        "response_format": {"type": "json_object"},
        "temperature": 0,
        "max_tokens": 200,
    }
    whole = _chat(moe, body)
    assert whole.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(whole.choices[0].message.content or ""), dict)
    chunks = _chunks(moe, body)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content


def test_weather_tool_required_gives_a_valid_call(moe: RunningServer, model: str) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": "required",
        "temperature": 0,
        "max_tokens": 100,
    }
    reply = _chat(moe, body)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert isinstance(call, ChatCompletionMessageFunctionToolCall)
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])
    chunks = _chunks(moe, body)
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == "get_weather"
    streamed = "".join((d.function.arguments or "") for d in deltas if d.function)
    assert json.loads(streamed) == arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


@tool
def get_weather(city: str) -> str:
    """Current weather in a city."""
    return json.dumps({"city": city, "temperature_c": 21, "sky": "sunny"})


class Person(BaseModel):
    """A person."""

    name: str = Field(max_length=40)
    age: int = Field(ge=0, le=130)


def _langchain(moe: RunningServer, model: str) -> ChatOpenAI:
    return ChatOpenAI(
        model=model,
        base_url=moe.url + "/v1",
        api_key="unused",
        temperature=0,
        max_tokens=120,
    )


def test_langchain_agent_completes_a_tool_round_trip(moe: RunningServer, model: str) -> None:
    agent = _langchain(moe, model).bind_tools([get_weather], tool_choice="required")
    messages: list[Any] = [HumanMessage("What's the weather in Paris?")]
    first = agent.invoke(messages)
    assert first.tool_calls and first.tool_calls[0]["name"] == "get_weather"
    messages.append(first)
    for call in first.tool_calls:
        messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    answer = _langchain(moe, model).bind_tools([get_weather]).invoke(messages)
    # the second step answers from the tool's result
    assert isinstance(answer.content, str) and answer.content and not answer.tool_calls


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_structured_output_returns_the_pydantic_object(
    moe: RunningServer, model: str, method: Literal["json_schema", "function_calling"]
) -> None:
    structured = _langchain(moe, model).with_structured_output(Person, method=method)
    person = structured.invoke("Invent a person with a name and an age.")
    assert isinstance(person, Person) and person.name


def test_creative_ideas_schema_gives_three_drawable_ideas(moe: RunningServer, model: str) -> None:
    """creative_svc's ideation schema on the real model: one complete idea per garment."""
    garments = ["coat", "dress", "pullover"]
    schema = ideas_schema(garments)
    body = {
        "model": model,
        "messages": json_ideas_prompt("clothes for a rainy day in the city", garments),
        "response_format": schema,
        "temperature": 0.7,
        "seed": 11,
        "max_tokens": 400,
    }
    reply = _chat(moe, body)
    assert reply.choices[0].finish_reason == "stop"
    text = reply.choices[0].message.content or ""
    jsonschema.validate(json.loads(text), schema["json_schema"]["schema"])
    ideas = parse_json_ideas(text, 3)
    assert [idea.visual_concept.split()[-1] for idea in ideas] == garments
    assert all(idea.why for idea in ideas)
