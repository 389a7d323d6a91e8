"""The whole platform as `make up` starts it, with the real default model, driven only
through the gateway: the official `openai` client asks a question of each intent
(streamed and not), images come from creative_svc, feedback is stored and read back,
keys and rate limits hold.

Real services, real Redis (the launcher's embedded one), the real default model
(built once under ./var/models and shared with the other real-model tests). Answers of
a 135M model vary in quality, so the checks are on what a user sees for sure: an
answer, the intent, the services the pipeline names, and facts the model gets right.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.helpers.e2e_chat import QUESTIONS, ask_auto, ingest_bell, openai_client
from tests.helpers.platform import Launch
from tests.helpers.servers import REPO_ROOT

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(launch: Launch, key: str) -> openai.OpenAI:
    return openai_client(launch, key)


@pytest.fixture(scope="module")
def ingested(launch: Launch, key: str) -> None:
    ingest_bell(launch, key)


def _check_pipeline(pipeline: dict[str, Any], intent: str, services: set[str]) -> None:
    assert pipeline["intent"] == intent, pipeline["scores"]
    ran = {s["service"] for s in pipeline["steps"] if s["status"] == "ok"}
    assert services <= ran, pipeline["steps"]
    if any(s["name"] == "moe.answer" and s["status"] == "ok" for s in pipeline["steps"]):
        # The core model wrote the answer: the UI's heatmap gets its experts per layer,
        # two per token (top-2) in each of the 30 layers, spread over more than two experts.
        per_layer = pipeline["experts"]["per_layer"]
        assert len(per_layer) == 30 and all(len(row) == 8 for row in per_layer)
        totals = {sum(row) for row in per_layer}
        assert len(totals) == 1 and totals.pop() % 2 == 0
        assert sum(1 for count in per_layer[0] if count) > 2
    else:
        assert pipeline["experts"] is None  # another service wrote it
    if intent == "chat":
        assert pipeline["experts"] is not None


@pytest.mark.parametrize(("text", "intent", "services", "expected"), QUESTIONS)
def test_each_intent_answers_with_the_default_model(
    client: openai.OpenAI,
    ingested: None,
    text: str,
    intent: str,
    services: set[str],
    expected: str,
) -> None:
    completion = ask_auto(client, text, f"e2e-{intent}")
    content = completion.choices[0].message.content or ""
    assert content.strip() and expected in content
    _check_pipeline((completion.model_extra or {})["pipeline"], intent, services)
    assert completion.usage is not None and completion.usage.completion_tokens > 0


@pytest.mark.parametrize(("text", "intent", "services", "expected"), QUESTIONS)
def test_each_intent_streams_with_the_default_model(
    client: openai.OpenAI,
    ingested: None,
    text: str,
    intent: str,
    services: set[str],
    expected: str,
) -> None:
    stream = ask_auto(
        client, text, f"e2e-stream-{intent}", stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip() and expected in content
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason is not None)
    _check_pipeline((final.model_extra or {})["pipeline"], intent, services)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_the_core_model_answers_directly(client: openai.OpenAI) -> None:
    [model] = [m.id for m in client.models.list().data if m.id != "auto"][:1]
    completion = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=24,
        temperature=0,
    )
    assert "Paris" in (completion.choices[0].message.content or "")


def test_feedback_is_stored_and_readable(client: openai.OpenAI, launch: Launch, key: str) -> None:
    completion = ask_auto(client, "Hello there!", "e2e-feedback")
    message_id = (completion.model_extra or {})["message_id"]
    headers = {"Authorization": f"Bearer {key}"}
    rating = {"session_id": "e2e-feedback", "message_id": message_id, "rating": -1}
    stored = httpx.post(
        f"{launch.gateway}/v1/feedback",
        json={**rating, "comment": "too short"},
        headers=headers,
        timeout=30,
    )
    assert stored.status_code == 201, stored.text
    listed = httpx.get(
        f"{launch.gateway}/v1/feedback",
        params={"session_id": "e2e-feedback"},
        headers=headers,
        timeout=30,
    ).json()
    [item] = listed["data"]
    assert item["rating"] == -1 and item["comment"] == "too short"
    assert item["message_content"] == (completion.choices[0].message.content or "").strip()


def _admin(launch: Launch, *args: str) -> str:
    # As an operator next to the platform runs it: the CLI finds the generated Redis
    # password in the platform's data dir.
    redis_url = f"redis://127.0.0.1:{int(launch.env['PLATFORM_PORT_BASE']) + 79}/0"
    result = subprocess.run(
        [sys.executable, "-m", "gateway.admin", "--redis-url", redis_url, *args],
        env={**os.environ, "GATEWAY_DATA_DIR": str(launch.var_dir)},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout


def test_keys_and_rate_limits_are_enforced(launch: Launch) -> None:
    created = json.loads(_admin(launch, "create", "--name", "e2e", "--rpm", "2", "--json"))
    limited = openai.OpenAI(
        base_url=f"{launch.gateway}/v1", api_key=created["key"], max_retries=0, timeout=60
    )
    assert [m.id for m in limited.models.list().data]
    limited.models.list()
    with pytest.raises(openai.RateLimitError) as over:
        limited.models.list()
    assert int(over.value.response.headers["retry-after"]) >= 1
    assert over.value.response.headers["x-ratelimit-remaining-requests"] == "0"

    # A revoked key is known but refused (403); an unknown one is not authenticated (401).
    _admin(launch, "revoke", created["id"])
    with pytest.raises(openai.PermissionDeniedError):
        limited.models.list()
    nobody = openai.OpenAI(
        base_url=f"{launch.gateway}/v1", api_key="sk-not-a-key", max_retries=0, timeout=60
    )
    with pytest.raises(openai.AuthenticationError):
        nobody.models.list()


def test_images_through_the_gateway(client: openai.OpenAI) -> None:
    result = client.images.generate(
        prompt="a red sneaker",
        n=1,
        size="256x256",
        response_format="b64_json",
        extra_body={"seed": 3},
    )
    assert result.data
    png = base64.b64decode(result.data[0].b64_json or "")
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size, image.mode) == ("PNG", (256, 256), "RGB")


def test_a_picture_request_shows_ideas_and_images(client: openai.OpenAI) -> None:
    completion = ask_auto(client, "Draw a picture of a handbag", "e2e-picture")
    pipeline = (completion.model_extra or {})["pipeline"]
    _check_pipeline(pipeline, "creative", {"creative_svc"})
    assert pipeline["images"] and pipeline["images"][0]["b64_json"]
    assert (completion.choices[0].message.content or "").strip()
