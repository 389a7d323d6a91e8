"""reasoning_svc as a real process with the real tools_svc; a scripted moe_svc stands in
until moe_svc serves its OpenAI API (tests/helpers/router_fakes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers.servers import RunningServer, start_fake, start_service

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_fake(
        "tests.helpers.router_fakes", tmp_path_factory.mktemp("fake"), name="fake_moe"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = start_service("tools_svc", tmp_path_factory.mktemp("tools"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reasoning(
    fake: RunningServer, tools: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    server = start_service(
        "reasoning_svc",
        tmp_path_factory.mktemp("reasoning"),
        upstreams={"moe_svc": fake.url, "tools_svc": tools.url},
        env={"REASONING_LOG_JSON": "false"},
    )
    yield server
    server.stop()


def script(fake: RunningServer, *rules: dict[str, Any]) -> None:
    httpx.put(f"{fake.url}/script", json=list(rules)).raise_for_status()


def reason(server: RunningServer, **body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/reason", json=body, timeout=60)


def test_pal_runs_the_models_program_in_the_tools_sandbox(
    reasoning: RunningServer, fake: RunningServer
) -> None:
    program = "```python\nheads, legs = 30, 74\nprint((legs - 2 * heads) // 2)\n```"
    script(fake, {"contains": "short Python 3 program", "reply": program})

    response = reason(reasoning, question="30 heads and 74 legs: how many cows?", strategy="pal")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "7" and body["finished"]
    call = body["tool_calls"][0]
    assert call["tool"] == "python" and call["output"]["stdout"].strip() == "7"
    assert [e["kind"] for e in body["trace"]] == [
        "prompt",
        "completion",
        "program",
        "observation",
        "answer",
    ]
    assert body["usage"]["model_calls"] == 1 and body["model"] == "fake-moe"


def test_react_uses_real_tools_and_feeds_errors_back(
    reasoning: RunningServer, fake: RunningServer
) -> None:
    steps = [
        'Thought: convert\nAction: unit_convert\nAction Input: {"value": 72, "from_unit": '
        '"F", "to_unit": "parsecs"}',
        "Thought: search the web\nAction: web_search\nAction Input: {}",
        'Thought: convert properly\nAction: unit_convert\nAction Input: {"value": 72, '
        '"from_unit": "degF", "to_unit": "degC"}',
        "Thought: done\nFinal Answer: 72 F is 22.2 C",
    ]
    script(fake, {"contains": "You can use these tools", "reply": steps})

    response = reason(reasoning, question="Convert 72 F to C", strategy="react", max_steps=5)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == "72 F is 22.2 C" and body["stop_reason"] == "answer"
    observations = [e["content"] for e in body["trace"] if e["kind"] == "observation"]
    assert "parsecs" in observations[0] and observations[0].startswith("Error:")
    assert observations[1].startswith("Unknown tool 'web_search'")
    assert "22.2" in observations[2]
    assert [c["tool"] for c in body["tool_calls"]] == ["unit_convert", "unit_convert"]
    # The agent saw the tools tools_svc lists.
    system = httpx.get(f"{fake.url}/requests").json()[-1]["messages"][0]["content"]
    assert "- training_planner:" in system and "- calculator:" in system


def test_react_stops_at_its_iteration_limit(reasoning: RunningServer, fake: RunningServer) -> None:
    script(
        fake,
        {"contains": "step limit is reached", "reply": "Final Answer: 4"},
        {
            "contains": "You can use these tools",
            "reply": 'Thought: again\nAction: calculator\nAction Input: {"expression": "2+2"}',
        },
    )

    body = reason(reasoning, question="What is 2+2?", strategy="react", max_steps=2).json()

    assert body["finished"] is False and body["stop_reason"] == "max_steps"
    assert body["answer"] == "4" and body["usage"]["model_calls"] == 3
    assert len(body["tool_calls"]) == 1  # the repeated call reused its observation


def test_self_consistency_votes_over_sampled_chains(
    reasoning: RunningServer, fake: RunningServer
) -> None:
    replies = ["Answer: 12", "Answer: 13", "Answer: 12.0", "Answer: $12"]
    script(fake, {"contains": "step by step", "reply": replies})

    body = reason(reasoning, question="q", strategy="self_consistency", samples=4).json()

    assert body["answer"] in {"12", "12.0", "$12"}
    assert body["votes"] == {"12": 3, "13": 1}
    requests = httpx.get(f"{fake.url}/requests").json()[-4:]
    assert {r["temperature"] for r in requests} == {0.7}


def test_tree_of_thoughts_searches_with_proposals_and_values(
    reasoning: RunningServer, fake: RunningServer
) -> None:
    script(
        fake,
        {"contains": "Judgement:", "reply": "likely"},
        {"contains": "Possible next steps:", "reply": "add 4 and 6\nmultiply 4 by 6"},
        {"contains": "Finish the solution", "reply": "4 * 6 = 24\nAnswer: 24"},
    )

    body = reason(
        reasoning, question="Make 24 from 4 and 6", strategy="tot", depth=2, beam_width=2
    ).json()

    assert body["answer"] == "24"
    kinds = [e["kind"] for e in body["trace"]]
    assert kinds.count("proposal") == 2 + 4 and kinds.count("selection") == 2
    assert body["usage"]["model_calls"] == (1 + 2) + (2 + 4) + 1


def test_auto_picks_a_strategy_and_says_why(reasoning: RunningServer, fake: RunningServer) -> None:
    script(fake, {"contains": "final answer only", "reply": "Paris"})

    body = reason(reasoning, question="Capital of France?").json()

    assert body["strategy"] == "direct" and body["requested_strategy"] == "auto"
    assert body["trace"][0]["kind"] == "choice" and body["answer"] == "Paris"


def test_model_failure_reaches_the_caller(reasoning: RunningServer, fake: RunningServer) -> None:
    script(fake, {"contains": "final answer only", "status": 500})

    response = reason(reasoning, question="Capital of France?", strategy="direct")

    assert response.status_code == 500
    assert response.json()["error"]["service"] == "moe_svc"


@pytest.mark.parametrize(
    ("payload", "status", "param"),
    [
        ({"question": ""}, 400, "question"),
        ({"question": "q", "strategy": "guess"}, 400, "strategy"),
        ({"question": "q", "samples": 100}, 400, "samples"),
        ({"question": "q", "max_steps": 100}, 400, "max_steps"),
        ({"question": "q", "context": [{"role": "user", "content": "x"}] * 50}, 413, "context"),
    ],
)
def test_bad_input_gets_a_clear_4xx(
    reasoning: RunningServer, payload: dict[str, Any], status: int, param: str
) -> None:
    response = httpx.post(f"{reasoning.url}/v1/reason", json=payload, timeout=10)

    assert response.status_code == status
    assert response.json()["error"]["param"] == param
