"""The local tokenizer is the core model's, and counts add up over the chat template."""

from __future__ import annotations

import random
from pathlib import Path

import httpx
import pytest
from tokenizers import Tokenizer

from common.breaker import CircuitBreaker
from common.http_client import ServiceClient
from memory_svc.tokenizer_file import build_tokenizer_json, load_tokenizer, smollm2_gguf_path
from memory_svc.tokens import GENERATION_PROMPT, LocalTokenCounter, MoeTokenCounter, render_message
from tests.integration.memory.harness import shared_tokenizer

SAMPLES = [
    "Hello, world! How are you doing today?",
    "  leading spaces and\ttabs\nnewlines\n\n",
    "Ünïcödé café 東京 🎉 emojis",
    "<|im_start|>user\nHi<|im_end|>\n",
    "def f(x):\n    return x**2  # comment",
    "The year 2024 had 365 days and 3.14159",
    "don't won't they're I'm we've",
]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(str(shared_tokenizer()))


def test_conversion_matches_transformers_reading_the_gguf(tokenizer: Tokenizer) -> None:
    transformers = pytest.importorskip("transformers")
    gguf = smollm2_gguf_path()
    reference = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    for text in SAMPLES:
        expected = reference(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.encode(text, add_special_tokens=False).ids == expected, text


def test_the_tokenizer_is_built_once_then_loaded(tmp_path: Path) -> None:
    target = tmp_path / "memory" / "tokenizer.json"
    first = load_tokenizer(target)
    assert target.exists()
    assert load_tokenizer(target).get_vocab_size() == first.get_vocab_size() == 49152
    assert list(target.parent.iterdir()) == [target]  # no temporary file left behind


def test_build_refuses_a_file_that_is_not_a_gguf(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError):
        build_tokenizer_json(bogus, tmp_path / "tokenizer.json")
    assert not (tmp_path / "tokenizer.json").exists()


def test_a_conversation_counts_as_the_sum_of_its_messages(tokenizer: Tokenizer) -> None:
    counter = LocalTokenCounter(tokenizer)
    rng = random.Random(0)
    pieces = [*SAMPLES, "\n", " ", "\n\nstarts with newlines", "ends with space "]
    for _ in range(50):
        messages = [
            (rng.choice(["system", "user", "assistant", "tool"]), "".join(rng.choices(pieces, k=3)))
            for _ in range(rng.randint(1, 6))
        ]
        whole = "".join(render_message(r, c) for r, c in messages) + GENERATION_PROMPT
        parts = sum(counter.count_sync(render_message(r, c)) for r, c in messages)
        assert counter.count_sync(whole) == parts + counter.count_sync(GENERATION_PROMPT)
    # Control tokens are one token each, not their spelling.
    assert counter.count_sync("<|im_start|><|im_end|>") == 2


def test_truncate_keeps_a_prefix_within_the_limit(tokenizer: Tokenizer) -> None:
    counter = LocalTokenCounter(tokenizer)
    text = " ".join(SAMPLES)
    for limit in (0, 1, 5, 17, 40):
        cut = counter.truncate(text, limit)
        assert text.startswith(cut)
        assert counter.count_sync(cut) <= limit
    assert counter.truncate(text, 10_000) == text


def _client(handler: httpx.MockTransport) -> ServiceClient:
    return ServiceClient("moe_svc", "http://moe.test", transport=handler, breaker=CircuitBreaker())


async def test_moe_counts_when_it_answers_and_local_counts_when_it_does_not(
    tokenizer: Tokenizer,
) -> None:
    local = LocalTokenCounter(tokenizer)
    up = _client(
        httpx.MockTransport(lambda r: httpx.Response(200, json={"tokens": [], "count": 42}))
    )
    counter = MoeTokenCounter(up, local, timeout_s=1)
    assert await counter.count("hello there") == 42
    assert counter.source == "moe_svc"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    down = MoeTokenCounter(_client(httpx.MockTransport(refuse)), local, timeout_s=1)
    assert await down.count("hello there") == local.count_sync("hello there")
    assert down.source == "local"
    missing = httpx.MockTransport(lambda r: httpx.Response(404, json={"detail": "Not Found"}))
    assert await MoeTokenCounter(_client(missing), local, timeout_s=1).count("hi") == 1
