"""Router losses match their references; expert counts account for every routed token."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import MixtralForCausalLM
from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

from moe_svc.modeling import ExpertStats, load_balancing_loss, load_pretrained, router_z_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("num_experts", "top_k"), [(4, 1), (8, 2), (8, 3)])
@pytest.mark.parametrize("with_mask", [False, True])
def test_load_balancing_loss_equals_transformers(
    num_experts: int, top_k: int, with_mask: bool
) -> None:
    g = torch.Generator().manual_seed(num_experts * 10 + top_k)
    B, T, layers = 3, 7, 4
    logits = tuple(torch.randn(B * T, num_experts, generator=g) * 2 for _ in range(layers))
    mask = None
    if with_mask:
        mask = torch.ones(B, T, dtype=torch.long)
        mask[0, :3] = 0
        mask[2, :5] = 0
    # transformers annotates a 1-tuple; it takes one tensor per layer
    expected = load_balancing_loss_func(logits, num_experts, top_k, mask)  # type: ignore[arg-type]
    got = load_balancing_loss(logits, num_experts, top_k, mask)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


def test_load_balancing_loss_is_minimal_for_uniform_routing() -> None:
    # every expert equally likely and equally chosen: f_e = k/E, P_e = 1/E -> loss = k
    E, k = 4, 2
    logits = torch.zeros(8, E)
    logits[torch.arange(8), torch.arange(8) % E] = 1e-3  # break ties evenly
    assert load_balancing_loss((logits,), E, k).item() == pytest.approx(k, rel=1e-3)
    skewed = torch.zeros(8, E)
    skewed[:, 0] = 5.0
    assert load_balancing_loss((skewed,), E, k).item() > k


def test_z_loss_is_mean_squared_logsumexp() -> None:
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(6, 5, generator=g) * 3, torch.randn(6, 5, generator=g))
    rows = [row.tolist() for layer in logits for row in layer]
    expected = sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in rows) / len(rows)
    assert router_z_loss(logits).item() == pytest.approx(expected, rel=1e-6)
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])  # 6 tokens as (B=2, T=3)
    kept = [
        r for layer in logits for r, m in zip(layer.tolist(), mask.reshape(-1), strict=True) if m
    ]
    expected = sum(math.log(sum(math.exp(v) for v in row)) ** 2 for row in kept) / len(kept)
    assert router_z_loss(logits, mask).item() == pytest.approx(expected, rel=1e-6)


@torch.no_grad()
def test_model_router_outputs_match_transformers(
    make_hf_model: Callable[..., MixtralForCausalLM], tmp_path: Path
) -> None:
    hf = make_hf_model("mixtral", num_local_experts=8, num_experts_per_tok=2, num_hidden_layers=3)
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path)
    ids = torch.randint(0, 101, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, :4] = 0
    # transformers: mask over the padding, position ids as its generate() computes them
    position_ids = (mask.cumsum(-1) - 1).clamp_min(0)
    expected = hf(ids, attention_mask=mask, position_ids=position_ids, output_router_logits=True)
    got = ours(ids, attention_mask=mask, output_router_logits=True)
    assert len(got.router_logits) == 3
    real = mask.reshape(-1).bool()  # padding positions compute don't-care values
    for ours_layer, hf_layer in zip(got.router_logits, expected.router_logits, strict=True):
        torch.testing.assert_close(ours_layer[real], hf_layer[real], atol=1e-4, rtol=0)
    torch.testing.assert_close(got.aux_loss, expected.aux_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        got.logits.reshape(18, -1)[real], expected.logits.reshape(18, -1)[real], atol=1e-4, rtol=0
    )
    assert got.z_loss.item() == pytest.approx(router_z_loss(got.router_logits, mask).item())


@torch.no_grad()
def test_expert_counts_sum_to_tokens_times_k(hf_dir: Callable[..., Path]) -> None:
    model = load_pretrained(hf_dir("mixtral", num_local_experts=8, num_experts_per_tok=2))
    stats = model.new_expert_stats()
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[0, :6] = 0  # 6 padding tokens are not counted
    model(torch.randint(0, 101, (3, 10)), attention_mask=mask)
    cache = model.new_cache(batch_size=1, max_len=8)
    model(torch.randint(0, 101, (1, 5)), cache=cache)
    model(torch.randint(0, 101, (1, 1)), cache=cache)  # the direct (decoding) dispatch path
    tokens = 30 - 6 + 5 + 1
    counts = stats.counts
    assert counts.shape == (2, 8)
    assert counts.sum(-1).tolist() == [tokens * 2, tokens * 2]
    data = json.loads(json.dumps(stats.to_dict()))
    assert data["tokens"] == tokens and data["counts"] == counts.tolist()
    assert all(sum(row) == pytest.approx(1.0) for row in stats.load_fractions())
    assert "e7" in stats.format_table()
    stats.reset()
    assert stats.counts.sum() == 0


def test_expert_stats_ignores_masked_tokens() -> None:
    stats = ExpertStats(num_layers=1, num_experts=3)
    selected = torch.tensor([[0, 1], [2, 1], [0, 2]])
    stats.update(0, selected, token_mask=torch.tensor([1, 0, 1]))
    assert stats.counts.tolist() == [[2, 1, 1]]
