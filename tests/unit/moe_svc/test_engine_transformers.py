"""Greedy decoding through the engine equals transformers `generate` token for token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from moe_svc.engine import Engine, EngineConfig, GenerationRequest, SamplingParams
from moe_svc.loader import load_model
from tests.helpers.tiny_llm import make_tiny_llm

PROMPTS = ["Hello world", "The capital of France is", "Grüße aus München"]
NEW_TOKENS = 20


def _reference(path: Path, prompts: list[list[int]]) -> list[list[int]]:
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    outputs = []
    for ids in prompts:
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,  # the engine below ignores EOS too
            do_sample=False,
            pad_token_id=0,
        )
        outputs.append(out[0, len(ids) :].tolist())
    return outputs


@pytest.mark.parametrize("heads", [(6, 2), (3, 1)])  # (3, 1): native decode attention
@pytest.mark.parametrize("model_type", ["llama", "mixtral"])
async def test_engine_greedy_equals_transformers_generate(
    tmp_path: Path, model_type: str, heads: tuple[int, int]
) -> None:
    path = make_tiny_llm(tmp_path / model_type, model_type=model_type, seed=3, heads=heads)
    loaded = load_model(path, "float32")
    prompts = [loaded.tokenizer.encode(p) for p in PROMPTS]
    expected = _reference(path, prompts)
    engine = Engine(loaded.model, loaded.tokenizer, EngineConfig(max_batch_size=4, max_context=64))
    engine.start()
    try:
        loop = asyncio.get_running_loop()
        params = SamplingParams(max_tokens=NEW_TOKENS, temperature=0.0)
        requests = [GenerationRequest(ids, params, loop) for ids in prompts]
        for request in requests:  # all at once: batched decoding
            engine.submit(request)
        for request in requests:
            while (await asyncio.wait_for(request.queue.get(), 30)).finish_reason is None:
                pass
    finally:
        engine.stop()
    assert [r.output_ids for r in requests] == expected
