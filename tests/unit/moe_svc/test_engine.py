"""The engine on a tiny random model: batching invariance, continuous batching, limits."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from moe_svc.engine import Delta, Engine, EngineConfig, GenerationRequest, QueueFull, SamplingParams
from moe_svc.loader import LoadedModel, load_model
from tests.helpers.tiny_llm import make_tiny_llm

PROMPTS = ["Hello world", "The capital of France is", "x", "Grüße aus München, schön! " * 3]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_model(make_tiny_llm(tmp_path_factory.mktemp("tiny")), "float32")


@pytest.fixture
def engine(tiny: LoadedModel) -> Iterator[Engine]:
    engine = Engine(tiny.model, tiny.tokenizer, EngineConfig(max_batch_size=3, max_context=96))
    engine.start()
    yield engine
    engine.stop()


async def _run(
    engine: Engine, tiny: LoadedModel, prompt: str, **params: Any
) -> tuple[GenerationRequest, str, Delta]:
    request = GenerationRequest(
        tiny.tokenizer.encode(prompt),
        SamplingParams(stop_token_ids=tiny.stop_token_ids, **params),
        asyncio.get_running_loop(),
        record_experts=True,
    )
    engine.submit(request)
    text = ""
    while True:
        delta = await asyncio.wait_for(request.queue.get(), 30)
        text += delta.text
        if delta.finish_reason is not None:
            return request, text, delta


async def test_greedy_output_is_the_same_alone_and_batched(
    engine: Engine, tiny: LoadedModel
) -> None:
    alone = [(await _run(engine, tiny, p, max_tokens=24, temperature=0.0))[0] for p in PROMPTS]
    # 4 requests on 3 rows: the 4th joins when a row frees, mid-way through the others
    batched = await asyncio.gather(
        *(_run(engine, tiny, p, max_tokens=24, temperature=0.0) for p in PROMPTS)
    )
    for a, (b, _, _) in zip(alone, batched, strict=True):
        assert a.output_ids == b.output_ids
        assert len(a.output_ids) == 24


async def test_requests_arriving_together_are_prefilled_in_one_forward(tiny: LoadedModel) -> None:
    # stepped by hand (no engine thread): the four requests are waiting at the same step
    engine = Engine(tiny.model, tiny.tokenizer, EngineConfig(max_batch_size=4, max_context=96))
    loop = asyncio.get_running_loop()

    def request(prompt: str) -> GenerationRequest:
        params = SamplingParams(max_tokens=10, temperature=0.0, stop_token_ids=frozenset())
        return GenerationRequest(tiny.tokenizer.encode(prompt), params, loop, record_experts=True)

    alone = []
    for prompt in PROMPTS:
        single = request(prompt)
        engine.submit(single)
        while not single.finished:
            engine.step()
        alone.append(single)
    together = [request(prompt) for prompt in PROMPTS]
    for r in together:
        engine.submit(r)
    forwards = 0

    def count(*_: object) -> None:
        nonlocal forwards
        forwards += 1

    hook = tiny.model.register_forward_hook(count)
    try:
        engine.step()
    finally:
        hook.remove()
    assert forwards == 2  # one prefill of all four prompts (left-padded), one decode step
    lengths = [len(r.prompt_ids) + 1 for r in together]  # prompt + the token decoded
    assert len(set(lengths)) > 1  # prompts of different lengths: padding was needed
    assert engine.cache.lengths[:4].tolist() == lengths  # and dropped from the cache
    while engine.num_running:
        engine.step()
    for a, b in zip(alone, together, strict=True):
        assert b.output_ids == a.output_ids and len(a.output_ids) == 10
        assert b.expert_counts is not None and a.expert_counts is not None
        assert torch.equal(b.expert_counts, a.expert_counts)  # padding is not counted


async def test_seeded_sampling_repeats_whatever_shares_the_batch(
    engine: Engine, tiny: LoadedModel
) -> None:
    first = await _run(engine, tiny, "Hello", max_tokens=16, temperature=1.0, seed=5)
    others = [_run(engine, tiny, p, max_tokens=16, temperature=1.0) for p in PROMPTS]
    again, *_ = await asyncio.gather(
        _run(engine, tiny, "Hello", max_tokens=16, temperature=1.0, seed=5), *others
    )
    assert first[0].output_ids == again[0].output_ids
    other_seed = await _run(engine, tiny, "Hello", max_tokens=16, temperature=1.0, seed=6)
    assert other_seed[0].output_ids != first[0].output_ids


async def test_a_short_request_joins_and_leaves_while_a_long_one_decodes(
    engine: Engine, tiny: LoadedModel
) -> None:
    long = asyncio.create_task(_run(engine, tiny, "Hello", max_tokens=80, temperature=0.0))
    for _ in range(10_000):  # until the long one decodes
        if engine.num_running:
            break
        await asyncio.sleep(0.001)
    short = await _run(engine, tiny, "x", max_tokens=3, temperature=0.0)
    assert not long.done()  # the short one finished while the long one was still going
    assert len(short[0].output_ids) == 3
    _, _, final = await long
    assert final.finish_reason == "length" and final.completion_tokens == 80


async def test_usage_and_expert_counts_on_the_final_delta(
    engine: Engine, tiny: LoadedModel
) -> None:
    request, _, final = await _run(engine, tiny, "Hello world", max_tokens=5, temperature=0)
    assert final.prompt_tokens == len(request.prompt_ids)
    assert final.completion_tokens == 5
    assert final.experts is not None
    config = tiny.model.config
    assert len(final.experts) == config.num_hidden_layers
    # every token of the prompt and 4 decoded ones (the 5th is never fed back) picks k experts
    tokens = len(request.prompt_ids) + 4
    assert all(sum(layer) == tokens * config.num_experts_per_tok for layer in final.experts)
    assert engine.routing is not None
    routed = engine.routing.to_dict()["tokens"]
    assert isinstance(routed, int) and routed >= tokens


async def test_stop_sequences_and_context_limit(engine: Engine, tiny: LoadedModel) -> None:
    _, text, _ = await _run(engine, tiny, "Hello world", max_tokens=30, temperature=0)
    stop = text[5:8]
    _, cut, final = await _run(
        engine, tiny, "Hello world", max_tokens=30, temperature=0, stop=(stop,)
    )
    assert final.finish_reason == "stop"
    assert cut == text[: text.index(stop)]
    # the context (96) ends generation before max_tokens does
    request, _, final = await _run(engine, tiny, "Hello", max_tokens=500, temperature=0)
    assert final.finish_reason == "length"
    assert len(request.prompt_ids) + len(request.output_ids) == 96


async def test_abort_frees_the_row_and_others_continue(engine: Engine, tiny: LoadedModel) -> None:
    loop = asyncio.get_running_loop()
    ids = tiny.tokenizer.encode("Hello")
    doomed = GenerationRequest(ids, SamplingParams(max_tokens=80, temperature=0), loop)
    engine.submit(doomed)
    await asyncio.wait_for(doomed.queue.get(), 30)
    engine.abort(doomed)
    while True:
        delta = await asyncio.wait_for(doomed.queue.get(), 30)
        if delta.finish_reason is not None:
            break
    assert delta.finish_reason == "abort" and len(doomed.output_ids) < 80
    results = await asyncio.gather(
        *(_run(engine, tiny, p, max_tokens=4, temperature=0) for p in PROMPTS[:3])
    )
    assert [len(r[0].output_ids) for r in results] == [4, 4, 4]
    for _ in range(1000):  # final deltas go out just before their rows are freed
        if engine.num_running == 0:
            break
        await asyncio.sleep(0.005)
    assert engine.num_running == 0


async def test_full_queue_refuses(tiny: LoadedModel) -> None:
    engine = Engine(tiny.model, tiny.tokenizer, EngineConfig(max_batch_size=1, max_queue=1))
    loop = asyncio.get_running_loop()
    params = SamplingParams(max_tokens=4, temperature=0)
    engine.submit(GenerationRequest([5, 6], params, loop))  # not started: it stays waiting
    with pytest.raises(QueueFull):
        engine.submit(GenerationRequest([5, 6], params, loop))
