"""Image embeddings spliced into prompts: exact positions, batched with text requests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import torch

from moe_svc.engine import Engine, EngineConfig, GenerationRequest, SamplingParams
from moe_svc.loader import LoadedModel, load_model
from tests.helpers.tiny_llm import make_tiny_llm

TEXTS = ["The capital of France is", "x", "Grüße aus München, schön! " * 2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_model(make_tiny_llm(tmp_path_factory.mktemp("tiny")), "float32")


@pytest.fixture
def engine(tiny: LoadedModel) -> Iterator[Engine]:
    engine = Engine(tiny.model, tiny.tokenizer, EngineConfig(max_batch_size=4, max_context=96))
    engine.start()
    yield engine
    engine.stop()


def _request(
    tiny: LoadedModel, ids: list[int], embeds: list[tuple[int, torch.Tensor]] | None = None
) -> GenerationRequest:
    return GenerationRequest(
        ids,
        SamplingParams(max_tokens=12, temperature=0.0, stop_token_ids=tiny.stop_token_ids),
        asyncio.get_running_loop(),
        image_embeds=embeds or [],
    )


async def _done(engine: Engine, request: GenerationRequest) -> list[int]:
    engine.submit(request)
    while (await asyncio.wait_for(request.queue.get(), 30)).finish_reason is None:
        pass
    return request.output_ids


def _embedding(tiny: LoadedModel, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        vectors: torch.Tensor = tiny.model.model.embed_tokens(torch.tensor(ids)).clone()
    return vectors


async def test_a_spliced_span_is_read_at_its_own_positions_alone_and_batched(
    engine: Engine, tiny: LoadedModel
) -> None:
    ids = tiny.tokenizer.encode("Hello world, here is a picture of a cat on a mat")
    plain = await _done(engine, _request(tiny, ids))
    # the span 3..8 given as vectors over placeholder ids: the same input, so the same output
    placeholders = ids[:3] + [0] * 5 + ids[8:]
    vectors = [(3, _embedding(tiny, ids[3:8]))]
    alone = await _done(engine, _request(tiny, placeholders, vectors))
    assert alone == plain
    # prefilled in one forward with shorter and longer text prompts (left padding moves
    # every row's positions): neither the image request's output nor theirs changes
    texts = [tiny.tokenizer.encode(t) for t in TEXTS]
    text_alone = [await _done(engine, _request(tiny, t)) for t in texts]
    together = await asyncio.gather(
        _done(engine, _request(tiny, placeholders, vectors)),
        *(_done(engine, _request(tiny, t)) for t in texts),
    )
    assert together[0] == plain
    assert list(together[1:]) == text_alone


async def test_different_vectors_give_a_different_answer(engine: Engine, tiny: LoadedModel) -> None:
    ids = tiny.tokenizer.encode("Hello world, here is a picture of a cat on a mat")
    placeholders = ids[:3] + [0] * 5 + ids[8:]
    own = await _done(engine, _request(tiny, placeholders, [(3, _embedding(tiny, ids[3:8]))]))
    torch.manual_seed(0)
    other = torch.randn(5, tiny.model.config.hidden_size) * 3
    assert await _done(engine, _request(tiny, placeholders, [(3, other)])) != own
