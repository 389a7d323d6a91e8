"""moe_svc on the real default model: built on first start, served to the openai client,
and, built without the specialisation artefact, decoding exactly what the dense SmolLM2
decodes.

The service builds the model into `./var/models` (what `make up` uses; reused while
its inputs are unchanged), so only the first run pays for the build (about a minute);
the unspecialised build goes to a temporary directory.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import torch
from openai.types.chat import ChatCompletionMessageParam

from moe_svc.build_default import DENSE_NAME, MOE_NAME, build
from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready

DATA_DIR = REPO_ROOT / "var"
QUESTION = "What is the capital of France?"
PROMPTS = [QUESTION, "Write a haiku about the sea.", "Name three fruits."]
NEW_TOKENS = 24


def _serve(log_dir: Path, env: dict[str, str]) -> Iterator[RunningServer]:
    server = start_service("moe_svc", log_dir, env={**env, "MOE_DTYPE": "float32"})
    try:
        wait_ready(server, timeout_s=600)  # first run: build (~1 min) + load
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default model as `make up` serves it (specialised when the artefact is there)."""
    yield from _serve(tmp_path_factory.mktemp("moe_default"), {"MOE_DATA_DIR": str(DATA_DIR)})


@pytest.fixture(scope="module")
def unspecialised_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The dense model and the upcycled one before specialisation (eight dense FFNs)."""
    models = tmp_path_factory.mktemp("unspecialised")
    build(models, artefact=None)
    yield models
    # 2.7 GB of weights: not left behind in the temporary directory.
    shutil.rmtree(models, ignore_errors=True)


@pytest.fixture(scope="module")
def unspecialised(unspecialised_models: Path) -> Iterator[RunningServer]:
    yield from _serve(unspecialised_models, {"MOE_MODEL_DIR": str(unspecialised_models / MOE_NAME)})


@pytest.fixture
def client(moe: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=moe.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def _prompt_tokens(moe: RunningServer, question: str) -> list[int]:
    text = (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
        f"Face<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
    )
    tokens: list[int] = httpx.post(moe.url + "/v1/tokenize", json={"text": text}).json()["tokens"]
    return tokens


def test_openai_client_gets_paris_with_correct_usage(
    moe: RunningServer, client: openai.OpenAI
) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": QUESTION}]
    whole = client.chat.completions.create(
        model=MOE_NAME,
        messages=messages,
        max_tokens=48,
        temperature=0,
    )
    answer = whole.choices[0].message.content or ""
    assert "Paris" in answer
    assert whole.choices[0].finish_reason == "stop"
    assert whole.usage is not None
    assert whole.usage.prompt_tokens == len(_prompt_tokens(moe, QUESTION))
    answer_tokens = httpx.post(moe.url + "/v1/tokenize", json={"text": answer}).json()["count"]
    assert whole.usage.completion_tokens == answer_tokens + 1  # and <|im_end|>
    stream = client.chat.completions.create(
        model=MOE_NAME,
        messages=messages,
        max_tokens=48,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.model_dump() == whole.usage.model_dump()


def test_greedy_tokens_equal_transformers_generate_on_the_dense_model(
    unspecialised: RunningServer, unspecialised_models: Path
) -> None:
    from transformers import LlamaForCausalLM

    moe = unspecialised
    dense = LlamaForCausalLM.from_pretrained(unspecialised_models / DENSE_NAME).eval()
    for question in PROMPTS:
        prompt = _prompt_tokens(moe, question)
        with torch.inference_mode():
            out = dense.generate(torch.tensor([prompt]), max_new_tokens=NEW_TOKENS, do_sample=False)
        expected = out[0, len(prompt) :].tolist()
        body = {
            "model": MOE_NAME,
            "prompt": prompt,
            "max_tokens": NEW_TOKENS,
            "temperature": 0,
            "return_token_ids": True,
        }
        served = httpx.post(moe.url + "/v1/completions", json=body, timeout=120).json()
        assert served["choices"][0]["token_ids"] == expected, question
