"""reasoning_svc's constrained ReAct and PAL on the real default model, with the real
tools_svc.

Each ReAct turn is decoded by moe_svc under the step schema, so the model's first
turn for a sum is a JSON object naming an offered tool with that tool's arguments
(or a final answer), never free text the loop has to repair. PAL's program is
decoded under its grammar, so it is Python that parses and runs in the sandbox.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def reasoning(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    logs: Path = tmp_path_factory.mktemp("reasoning_default_model")
    moe = start_service("moe_svc", logs, env={"MOE_DATA_DIR": str(REPO_ROOT / "var")})
    servers = [moe]
    try:
        wait_ready(moe, timeout_s=600)
        tools = start_service("tools_svc", logs)
        servers.append(tools)
        server = start_service(
            "reasoning_svc",
            logs,
            upstreams={"moe_svc": moe.url, "tools_svc": tools.url},
            env={"REASONING_REACT_CONSTRAINED": "true", "REASONING_MODEL_TIMEOUT_S": "120"},
        )
        servers.append(server)
        yield server
    finally:
        for running in reversed(servers):
            running.stop()


def test_a_constrained_react_turn_is_a_valid_tool_call_or_answer(
    reasoning: RunningServer,
) -> None:
    body = {"question": "What is 17 * 23?", "strategy": "react", "max_steps": 1}
    response = httpx.post(f"{reasoning.url}/v1/reason", json=body, timeout=180)

    assert response.status_code == 200, response.text
    trace = response.json()["trace"]
    prompt = next(e for e in trace if e["kind"] == "prompt")
    assert prompt["data"]["schema"] == "react_step"
    first = next(e for e in trace if e["kind"] == "completion")
    turn = json.loads(first["content"])  # the whole reply is one JSON object
    thought = next(e for e in trace if e["kind"] == "thought")
    assert thought["data"]["read_as"] == "json" and turn["thought"] == thought["content"]
    if "final_answer" in turn:
        assert set(turn) == {"thought", "final_answer"}
        return
    assert set(turn) == {"thought", "action", "action_input"}
    assert turn["action"] in {"calculator", "python"}, turn
    action = next(e for e in trace if e["kind"] == "action")
    assert action["content"] == turn["action"] and "refused" not in action["data"]
    # The arguments are the tool's own, so tools_svc ran the call instead of refusing it.
    call = response.json()["tool_calls"][0]
    assert call["tool"] == turn["action"] and call["arguments"] == turn["action_input"]
    assert call["error"] is None, call


def test_a_pal_program_is_decoded_under_the_grammar_and_runs(reasoning: RunningServer) -> None:
    question = (
        "A baker makes 15 trays of 24 cookies and sells 290 cookies. How many cookies are left?"
    )
    body = {"question": question, "strategy": "pal"}
    response = httpx.post(f"{reasoning.url}/v1/reason", json=body, timeout=180)

    assert response.status_code == 200, response.text
    result = response.json()
    trace = result["trace"]
    assert next(e for e in trace if e["kind"] == "prompt")["data"]["grammar"] is True
    program = next(e for e in trace if e["kind"] == "program")["content"]
    ast.parse(program)  # the grammar's subset is Python
    ran = next(e for e in trace if e["kind"] == "observation")
    assert ran["data"]["exit_code"] == 0, ran
    assert result["stop_reason"] == "answer" and result["answer"] == ran["data"]["stdout"].strip()
