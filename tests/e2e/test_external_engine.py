"""The platform with a foreign engine as its core model: llama.cpp's OpenAI-compatible
server (llama-cpp-python) serving the SmolLM2 GGUF the platform installs, named in
`MODEL_ENGINES` and made the default with `DEFAULT_MODEL`, as a user of vLLM or
Ollama would configure it (docs/deployment.md).

The whole platform runs as `make up` starts it. Every intent, streamed and not, goes
through the gateway with the `openai` client; the engine's access log shows it wrote
the answers. Then the engine is killed: `auto` fails at once with a 503 naming it, and
the gateway's readiness says degraded.

This module runs before the other e2e modules (file order) and stops its platform
when it ends, so that only one platform holds the machine at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from moe_svc.loader import ensure_default_model
from tests.helpers.e2e_chat import QUESTIONS as ANSWERED
from tests.helpers.e2e_chat import ask_auto, ingest_bell, openai_client
from tests.helpers.llama_server import LlamaServer, start_llama_server
from tests.helpers.platform import Launch, launched
from tests.helpers.servers import REPO_ROOT

pytestmark = pytest.mark.e2e

# (question, intent, the services its pipeline must show): what the answer says is the
# engine's, not checked here.
QUESTIONS = [question[:3] for question in ANSWERED]

ENGINE = "llamacpp"
ALIAS = "smollm2-q4"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    server = start_llama_server(tmp_path_factory.mktemp("llama"), ALIAS)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, engine: LlamaServer) -> Iterator[Launch]:
    engines = [{"name": ENGINE, "base_url": engine.url, "models": [ALIAS]}]
    env = {
        "MOE_MODEL_DIR": str(ensure_default_model(REPO_ROOT / "var" / "models")),
        "RAG_WIKI_MAX_PAGES": "5",
        "ROUTER_RAG_TIMEOUT_S": "300",
        # A slow CI machine: a turn may take long, within the gateway's 300 s.
        "ROUTER_TURN_TIMEOUT_S": "290",
        "MODEL_ENGINES": json.dumps(engines),
        "DEFAULT_MODEL": ALIAS,
    }
    with launched(env, tmp_path_factory.mktemp("platform"), ready_timeout_s=900) as launch:
        yield launch


@pytest.fixture(scope="module")
def key(platform: Launch) -> str:
    return (platform.var_dir / "gateway" / "local_api_key").read_text().strip()


@pytest.fixture(scope="module")
def client(platform: Launch, key: str) -> openai.OpenAI:
    return openai_client(platform, key)


@pytest.fixture(scope="module")
def ingested(platform: Launch, key: str) -> None:
    ingest_bell(platform, key)


def _check_pipeline(pipeline: dict[str, Any], intent: str, services: set[str]) -> None:
    assert pipeline["intent"] == intent, pipeline["scores"]
    ran = {s["service"] for s in pipeline["steps"] if s["status"] == "ok"}
    assert services <= ran, pipeline["steps"]
    for step in pipeline["steps"]:
        if step["name"] == "moe.answer" and step["status"] == "ok":
            # The core model's step names the engine that answered.
            assert (step["detail"]["model"], step["detail"]["server"]) == (
                ALIAS,
                f"engine:{ENGINE}",
            )
    # An engine has no experts to show: no heatmap rather than a made-up one.
    assert pipeline["experts"] is None


def test_the_engines_model_is_listed_marked_and_ready(
    client: openai.OpenAI, platform: Launch
) -> None:
    cards = {m.id: m for m in client.models.list().data}
    assert {"auto", ALIAS} <= set(cards)
    card = cards[ALIAS]
    assert card.owned_by == ENGINE
    assert (card.model_extra or {})["metadata"]["engine"] == ENGINE
    assert (card.model_extra or {})["metadata"]["platform_extensions"] is False
    # moe_svc's own model stays served beside it.
    assert any(m.startswith("smollm2-135m") for m in cards)
    readiness = platform.readiness() or {}
    assert readiness.get("status") == "ready"
    assert readiness["services"][f"engine:{ENGINE}"]["status"] == "up"


@pytest.mark.parametrize(("text", "intent", "services"), QUESTIONS)
def test_each_intent_is_answered_by_the_engine(
    client: openai.OpenAI,
    engine: LlamaServer,
    ingested: None,
    text: str,
    intent: str,
    services: set[str],
) -> None:
    before = engine.completions_answered()
    completion = ask_auto(client, text, f"engine-{intent}")
    assert (completion.choices[0].message.content or "").strip()
    _check_pipeline((completion.model_extra or {})["pipeline"], intent, services)
    if intent != "tool":  # the tool plan runs the converter and needs no model
        assert engine.completions_answered() > before, "the engine wrote no answer"


@pytest.mark.parametrize(("text", "intent", "services"), QUESTIONS[-2:])
def test_streamed_answers_come_from_the_engine(
    client: openai.OpenAI, engine: LlamaServer, text: str, intent: str, services: set[str]
) -> None:
    before = engine.completions_answered()
    stream = ask_auto(client, text, f"engine-stream-{intent}", stream=True)
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip()
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason is not None)
    _check_pipeline((final.model_extra or {})["pipeline"], intent, services)
    if intent == "chat":
        assert engine.completions_answered() > before


def test_a_request_naming_the_engines_model_goes_to_it(
    client: openai.OpenAI, engine: LlamaServer
) -> None:
    before = engine.completions_answered()
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "What is the capital of France?"}
    ]
    completion = client.chat.completions.create(
        model=ALIAS, messages=question, max_tokens=24, temperature=0
    )
    assert "Paris" in (completion.choices[0].message.content or "")
    # Platform extensions are not passed on: the engine answered, without experts.
    assert "experts" not in (completion.model_extra or {})
    streamed = client.chat.completions.create(
        model=ALIAS, messages=question, max_tokens=24, temperature=0, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert "Paris" in text
    assert engine.completions_answered() == before + 2


def test_without_the_engine_auto_fails_fast_and_readiness_is_degraded(
    platform: Launch, key: str, engine: LlamaServer
) -> None:
    engine.stop()
    started = time.monotonic()
    response = httpx.post(
        f"{platform.gateway}/v1/chat/completions",
        json={"model": "auto", "messages": [{"role": "user", "content": "Hi! How are you?"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert f"engine:{ENGINE}" in error["message"], error
    # Fast: a refused connection, not a timeout (the model timeout is 120 s).
    assert elapsed < 30, elapsed
    readiness = httpx.get(f"{platform.gateway}/readyz", timeout=30)
    assert readiness.status_code == 503
    body = readiness.json()
    assert body["status"] == "degraded"
    assert body["services"][f"engine:{ENGINE}"]["status"] == "down"
    # The services that use the engine by default say so in their own readiness.
    router = body["services"]["router_svc"]
    assert router["status"] == "down", router
