"""Sampling: greedy, seeds, top-k / top-p cuts, penalties."""

from __future__ import annotations

import torch

from moe_svc.engine import SamplingParams
from moe_svc.engine.sampler import apply_penalties, sample_row


def _logits() -> torch.Tensor:
    return torch.tensor([1.0, 3.0, 2.5, -1.0, 0.5])


def test_greedy_takes_the_argmax() -> None:
    assert sample_row(_logits(), SamplingParams(temperature=0.0), None) == 1


def test_same_seed_same_tokens_other_seed_other_tokens() -> None:
    params = SamplingParams(temperature=1.5)
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0))

    def draw(seed: int) -> list[int]:
        g = torch.Generator().manual_seed(seed)
        return [sample_row(logits, params, g) for _ in range(20)]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)


def test_top_k_one_and_tiny_top_p_are_greedy() -> None:
    g = torch.Generator().manual_seed(0)
    for params in (SamplingParams(temperature=2.0, top_k=1), SamplingParams(top_p=0.01)):
        assert {sample_row(_logits(), params, g) for _ in range(50)} == {1}


def test_top_k_keeps_only_the_k_best() -> None:
    g = torch.Generator().manual_seed(0)
    params = SamplingParams(temperature=5.0, top_k=2)
    assert {sample_row(_logits(), params, g) for _ in range(200)} == {1, 2}


def test_top_p_keeps_the_smallest_set_reaching_the_mass() -> None:
    g = torch.Generator().manual_seed(0)
    # probabilities ~ [0.5, 0.3, 0.15, 0.05]: top_p 0.7 keeps the first two
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    drawn = {sample_row(logits, SamplingParams(top_p=0.7), g) for _ in range(300)}
    assert drawn == {0, 1}


def test_penalties_follow_openai_and_ctrl() -> None:
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)
    out = apply_penalties(_logits(), params, prompt_ids=[0], output_ids=[1, 1, 2])
    # token 1 twice: 3 - 0.5 - 2*0.25; token 2 once: 2.5 - 0.5 - 0.25; prompt token untouched
    assert torch.allclose(out, torch.tensor([1.0, 2.0, 1.75, -1.0, 0.5]))
    rep = apply_penalties(_logits(), SamplingParams(repetition_penalty=2.0), [3], [1])
    # positive logits are divided, negative ones multiplied
    assert torch.allclose(rep, torch.tensor([1.0, 1.5, 2.5, -2.0, 0.5]))
