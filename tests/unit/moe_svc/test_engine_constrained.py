"""Constrained sequences in the continuous batch: exact alone or batched, neighbours unchanged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
import torch

from moe_svc.engine import Engine, EngineConfig, GenerationRequest, SamplingParams
from moe_svc.engine.sampler import sampling_logprobs
from moe_svc.loader import LoadedModel, load_model
from moe_svc.structured import GrammarCompiler, GrammarError, json_grammar
from tests.helpers.tiny_llm import make_tiny_llm

SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"enum": ["yes", "no", "maybe"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 9},
    },
    "required": ["answer", "score"],
    "additionalProperties": False,
}
PROMPTS = ["Hello world", "The capital of France is", "Numbers 0 1 2"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_model(make_tiny_llm(tmp_path_factory.mktemp("tiny")), "float32")


@pytest.fixture(scope="module")
def grammars(tiny: LoadedModel) -> GrammarCompiler:
    tokenizer_json = (tiny.path / "tokenizer.json").read_text()
    return GrammarCompiler(
        tokenizer_json, tiny.model.config.vocab_size, sorted(tiny.stop_token_ids)
    )


@pytest.fixture
def engine(tiny: LoadedModel) -> Iterator[Engine]:
    engine = Engine(tiny.model, tiny.tokenizer, EngineConfig(max_batch_size=4, max_context=128))
    engine.start()
    yield engine
    engine.stop()


async def _run(
    engine: Engine,
    tiny: LoadedModel,
    prompt: str,
    grammars: GrammarCompiler | None,
    **params: Any,
) -> GenerationRequest:
    request = GenerationRequest(
        tiny.tokenizer.encode(prompt),
        SamplingParams(stop_token_ids=tiny.stop_token_ids, **params),
        asyncio.get_running_loop(),
        constraint=grammars.state(json_grammar(SCHEMA)) if grammars else None,
    )
    engine.submit(request)
    while (await asyncio.wait_for(request.queue.get(), 30)).finish_reason is None:
        pass
    return request


@pytest.mark.parametrize("sampling", [{"temperature": 0.0}, {"temperature": 1.0, "seed": 7}])
async def test_constrained_sequence_is_the_same_alone_and_batched(
    engine: Engine, tiny: LoadedModel, grammars: GrammarCompiler, sampling: dict[str, object]
) -> None:
    params = {"max_tokens": 40, **sampling}
    alone = await _run(engine, tiny, PROMPTS[0], grammars, **params)
    plain_alone = [
        await _run(engine, tiny, p, None, max_tokens=20, temperature=0.0) for p in PROMPTS
    ]
    batched = await asyncio.gather(
        _run(engine, tiny, PROMPTS[0], grammars, **params),
        *(_run(engine, tiny, p, None, max_tokens=20, temperature=0.0) for p in PROMPTS),
    )
    assert batched[0].output_ids == alone.output_ids
    # unconstrained neighbours decode exactly what they decode without it
    assert [r.output_ids for r in batched[1:]] == [r.output_ids for r in plain_alone]
    text = tiny.tokenizer.decode(alone.output_ids)
    jsonschema.validate(json.loads(text), SCHEMA)


def test_logprobs_follow_temperature_and_top_p() -> None:
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    hot = sampling_logprobs(logits, SamplingParams(temperature=2.0))
    assert torch.allclose(hot, torch.log_softmax(logits / 2.0, -1))
    nucleus = sampling_logprobs(logits, SamplingParams(temperature=1.0, top_p=0.8))
    kept = torch.softmax(logits, -1)[:2]
    assert torch.allclose(nucleus[:2].exp(), kept / kept.sum())
    assert torch.isinf(nucleus[2:]).all()
    greedy = sampling_logprobs(logits, SamplingParams(temperature=0.0))
    assert torch.allclose(greedy, torch.log_softmax(logits, -1))


def test_a_model_without_an_end_token_refuses_grammars_but_still_decodes(
    tiny: LoadedModel,
) -> None:
    tokenizer_json = (tiny.path / "tokenizer.json").read_text()
    compiler = GrammarCompiler(tokenizer_json, tiny.model.config.vocab_size, [])
    with pytest.raises(GrammarError, match="no end-of-sequence token"):
        compiler.compile(json_grammar({"type": "object"}))
    assert compiler.tokenizer.decode_bytes([5]) == GrammarCompiler(
        tokenizer_json, tiny.model.config.vocab_size, sorted(tiny.stop_token_ids)
    ).tokenizer.decode_bytes([5])
