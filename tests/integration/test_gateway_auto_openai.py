"""Model `auto` keeps the OpenAI contract: the real gateway, the real router_svc and the real
moe_svc with the default model (every other upstream a stand-in).

Tools, `response_format` and an agent's tool results reach the core model with their
constraint; the sampling controls reach the step that writes the answer (or are refused
with a 400 naming the field); bodies and chunks validate against the `openai` package's
own models, with the gateway's `pipeline` extension still there. LangChain's `bind_tools`
agent and `with_structured_output` run through `auto`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready
from tests.integration.gateway_support import (
    ASK_WEATHER,
    UPSTREAMS,
    WEATHER_TOOL,
    WEATHER_TURNS,
    gateway_stack,
)
from tests.integration.test_moe_structured_outputs import Person, get_weather

# A greeting: the chat plan, whose answer the core model writes.
GREETING = {"role": "user", "content": "Hi there! How are you today?"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(gateway URL, router URL)."""
    log_dir: Path = tmp_path_factory.mktemp("gateway_auto_openai")
    started: dict[str, str] = {}

    def moe(_: RunningServer) -> RunningServer:
        env = {"MOE_DATA_DIR": str(REPO_ROOT / "var"), "MOE_DTYPE": "float32"}
        server = start_service("moe_svc", log_dir, env=env)
        wait_ready(server, timeout_s=600)
        started["moe_svc"] = server.url
        return server

    def router(fake: RunningServer) -> RunningServer:
        others = (*UPSTREAMS, "reasoning_svc", "tools_svc")
        upstreams = {name: fake.url for name in others if name != "router_svc"}
        server = start_service(
            "router_svc",
            log_dir,
            upstreams={**upstreams, **started},
            env={"ROUTER_LOG_JSON": "false"},
        )
        wait_ready(server)
        started["router_svc"] = server.url
        return server

    with gateway_stack(log_dir, real={"moe_svc": moe, "router_svc": router}) as (gw, _, _):
        yield gw.url, started["router_svc"]


@pytest.fixture(scope="module")
def gateway(stack: tuple[str, str]) -> str:
    return stack[0]


def _chat(gateway: str, **body: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{gateway}/v1/chat/completions", json={"model": "auto", **body}, timeout=300
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    ChatCompletion.model_validate(answer)
    assert all("refusal" in c["message"] for c in answer["choices"])
    assert answer["pipeline"]["steps"]
    return answer


def _stream(gateway: str, **body: Any) -> tuple[list[ChatCompletionChunk], dict[str, Any]]:
    """The chunks, validated, and the last chunk with its `pipeline`."""
    url = f"{gateway}/v1/chat/completions"
    payload = {"model": "auto", **body, "stream": True}
    with httpx.stream("POST", url, json=payload, timeout=300) as response:
        assert response.status_code == 200
        data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    raw = [json.loads(d) for d in data[:-1]]
    for chunk in raw:
        assert "error" not in chunk, chunk
        # A role, where a delta carries one, is a string: never null.
        assert all(c["delta"].get("role", "assistant") == "assistant" for c in chunk["choices"])
    final = next(c for c in raw if "pipeline" in c)
    return [ChatCompletionChunk.model_validate(c) for c in raw], final


def _answer_steps(answer: dict[str, Any]) -> list[str]:
    return [s["name"] for s in answer["pipeline"]["steps"] if s["status"] == "ok"]


def test_a_required_tool_call_comes_back_as_openai_tool_calls(gateway: str) -> None:
    body = {"messages": [ASK_WEATHER], "tools": [WEATHER_TOOL], "tool_choice": "required"}
    answer = _chat(gateway, **body, max_tokens=60, temperature=0)
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    call = choice["message"]["tool_calls"][0]
    assert call["id"] and call["function"]["name"] == "get_weather"
    assert isinstance(json.loads(call["function"]["arguments"])["city"], str)
    assert "moe.answer" in _answer_steps(answer)

    chunks, final = _stream(gateway, **body, max_tokens=60, temperature=0)
    calls = [t for c in chunks for ch in c.choices for t in ch.delta.tool_calls or []]
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    arguments = "".join(t.function.arguments or "" for t in calls if t.function)
    assert isinstance(json.loads(arguments)["city"], str)
    assert final["choices"][0]["finish_reason"] == "tool_calls"
    assert final["pipeline"]["plan"]["steps"]


def test_json_schema_through_auto_is_valid(gateway: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    answer = _chat(
        gateway,
        # A factual question: without the constraint, retrieval would answer it.
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
        max_tokens=40,
        temperature=0,
    )
    assert set(json.loads(answer["choices"][0]["message"]["content"])) == {"city", "country"}
    assert "moe.answer" in _answer_steps(answer)


def test_the_tool_result_turn_continues(gateway: str) -> None:
    body = {"messages": WEATHER_TURNS, "tools": [WEATHER_TOOL], "max_tokens": 24}
    answer = _chat(gateway, **body, temperature=0)
    assert answer["choices"][0]["message"]["content"]
    chunks, final = _stream(gateway, **body, temperature=0)
    text = "".join(ch.delta.content or "" for c in chunks for ch in c.choices)
    assert text and final["choices"][0]["finish_reason"] in ("stop", "length")


def test_sampling_controls_reach_the_core_models_answer(gateway: str) -> None:
    cut = _chat(gateway, messages=[GREETING], max_tokens=3, temperature=0)
    assert cut["choices"][0]["finish_reason"] == "length"
    _, final = _stream(gateway, messages=[GREETING], max_completion_tokens=3, temperature=0)
    assert final["choices"][0]["finish_reason"] == "length"

    two = _chat(gateway, messages=[GREETING], n=2, max_tokens=8, logprobs=True, top_logprobs=2)
    assert [c["index"] for c in two["choices"]] == [0, 1]
    for choice in two["choices"]:
        tokens = choice["logprobs"]["content"]
        assert tokens and all(len(t["top_logprobs"]) == 2 for t in tokens)

    sampled = {"messages": [GREETING], "max_tokens": 12, "temperature": 1.0, "seed": 7}
    first, again = _chat(gateway, **sampled), _chat(gateway, **sampled)
    assert first["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"]

    greedy = _chat(gateway, messages=[GREETING], max_tokens=12, temperature=0)
    words = greedy["choices"][0]["message"]["content"].split()
    assert len(words) >= 3
    stopped = _chat(gateway, messages=[GREETING], max_tokens=12, temperature=0, stop=[words[2]])
    assert words[2] not in stopped["choices"][0]["message"]["content"]
    assert stopped["choices"][0]["finish_reason"] == "stop"


def test_a_plan_that_cannot_honour_a_control_refuses_it(stack: tuple[str, str]) -> None:
    _, router = stack
    body = {
        "messages": [{"role": "user", "content": "When was the telephone patented?"}],
        "options": {"intent": "factual", "seed": 3},
    }
    response = httpx.post(f"{router}/v1/dispatch", json=body, timeout=60)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "seed"


# --- LangChain through auto ---------------------------------------------------------------


def _langchain(gateway: str) -> ChatOpenAI:
    return ChatOpenAI(
        model="auto",
        base_url=f"{gateway}/v1",
        api_key="unused",
        temperature=0,
        max_tokens=120,
        max_retries=0,
    )


def test_a_langchain_agent_completes_a_tool_round_trip(gateway: str) -> None:
    agent = _langchain(gateway).bind_tools([get_weather], tool_choice="required")
    messages: list[Any] = [HumanMessage("What's the weather in Paris?")]
    first = agent.invoke(messages)
    assert first.tool_calls and first.tool_calls[0]["name"] == "get_weather"
    messages.append(first)
    for call in first.tool_calls:
        messages.append(ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"]))
    answer = _langchain(gateway).bind_tools([get_weather]).invoke(messages)
    assert isinstance(answer.content, str) and answer.content and not answer.tool_calls


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_langchain_structured_output_through_auto(
    gateway: str, method: Literal["json_schema", "function_calling"]
) -> None:
    structured = _langchain(gateway).with_structured_output(Person, method=method)
    person = structured.invoke("Invent a person with a name and an age.")
    assert isinstance(person, Person) and person.name
