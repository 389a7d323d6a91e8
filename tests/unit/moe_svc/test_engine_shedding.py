"""Load shedding in the engine: a deadline on waiting, and the Retry-After it estimates.

The engine is stepped by hand on a tiny random model, with a clock the test moves.
"""

from __future__ import annotations

import asyncio

import pytest

from moe_svc.engine import Delta, Engine, EngineConfig, GenerationRequest, QueueFull, SamplingParams
from moe_svc.loader import LoadedModel, load_model
from tests.helpers.tiny_llm import make_tiny_llm


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_model(make_tiny_llm(tmp_path_factory.mktemp("tiny")), "float32")


def _engine(
    tiny: LoadedModel, clock: Clock, max_queue_wait_s: float, max_queue: int = 64
) -> Engine:
    config = EngineConfig(
        max_batch_size=1,
        max_queue=max_queue,
        max_queue_wait_s=max_queue_wait_s,
        max_context=96,
    )
    return Engine(tiny.model, tiny.tokenizer, config, clock=clock)


def _request(max_tokens: int) -> GenerationRequest:
    # ignores end-of-sequence: exactly max_tokens tokens each
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
    return GenerationRequest([5, 6, 7], params, asyncio.get_running_loop())


async def _deltas(request: GenerationRequest) -> list[Delta]:
    await asyncio.sleep(0)  # the engine posts through the loop
    deltas = []
    while not request.queue.empty():
        deltas.append(request.queue.get_nowait())
    return deltas


async def test_a_request_waiting_past_the_deadline_is_shed_unstarted(tiny: LoadedModel) -> None:
    clock = Clock()
    engine = _engine(tiny, clock, max_queue_wait_s=5.0)
    running, waiting = _request(max_tokens=50), _request(max_tokens=4)
    engine.submit(running)
    engine.submit(waiting)
    engine.step()  # `running` takes the only row
    clock.now += 5.0
    engine.step()  # at the deadline, not past it: still waiting
    assert engine.num_waiting == 1 and await _deltas(waiting) == []

    clock.now += 0.1
    engine.step()
    (shed,) = await _deltas(waiting)
    assert shed.finish_reason == "abort" and shed.error is not None
    assert "waited 5.1 s" in shed.error
    assert shed.retry_after_s is not None and shed.retry_after_s >= 1
    assert engine.num_waiting == 0 and waiting.finished
    # no work was done for it, and none is later
    while not running.finished:
        engine.step()
    assert waiting.output_ids == [] and await _deltas(waiting) == []
    assert len(running.output_ids) == 50


async def test_no_deadline_when_it_is_zero(tiny: LoadedModel) -> None:
    clock = Clock()
    engine = _engine(tiny, clock, max_queue_wait_s=0.0)
    running, waiting = _request(max_tokens=3), _request(max_tokens=2)
    engine.submit(running)
    engine.submit(waiting)
    engine.step()
    clock.now += 3600.0
    while not waiting.finished:
        engine.step()
    assert len(waiting.output_ids) == 2
    assert all(d.error is None for d in await _deltas(waiting))


async def test_retry_after_is_the_queue_times_the_recent_time_between_admissions(
    tiny: LoadedModel,
) -> None:
    clock = Clock()
    engine = _engine(tiny, clock, max_queue=2, max_queue_wait_s=0.0)
    for _ in range(3):  # one admission every 2 s, each done in its prefill step
        request = _request(max_tokens=1)
        engine.submit(request)
        engine.step()
        assert request.finished
        clock.now += 2.0
    engine.submit(_request(max_tokens=1))
    engine.submit(_request(max_tokens=1))
    with pytest.raises(QueueFull) as full:
        engine.submit(_request(max_tokens=1))
    # 3 admissions in the 6 s up to now: 2 s each; a retry would be third in the queue
    assert full.value.retry_after_s == pytest.approx(6.0)

    clock.now += 120.0  # no admission for a minute: the estimate is bounded, not stale
    with pytest.raises(QueueFull) as stalled:
        engine.submit(_request(max_tokens=1))
    assert stalled.value.retry_after_s == 1.0  # the deadline (none here), at least 1 s
