"""The shared-base expert layout computes what Mixtral's block computes."""

from __future__ import annotations

import copy

import pytest
import torch

from moe_svc.engine.shared_experts import SharedBaseMoeBlock, convert_experts
from moe_svc.modeling import CausalLM, ModelConfig


def _model() -> CausalLM:
    torch.manual_seed(0)
    config = ModelConfig(
        model_type="mixtral",
        vocab_size=97,
        hidden_size=48,
        intermediate_size=40,
        num_hidden_layers=3,
        num_attention_heads=6,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        initializer_range=0.2,
    )
    model = CausalLM(config).eval()
    for layer in model.model.layers:
        torch.nn.init.normal_(layer.mlp.gate.weight, std=1.0)
    return model


def _upcycle(model: CausalLM, rank: int) -> None:
    """Every expert = expert 0 (+ a random rank-`rank` delta for experts > 0)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model.model.layers:
            experts = layer.mlp.experts
            for weights in (experts.gate_up_proj, experts.down_proj):
                weights[1:] = weights[0]
                if rank:
                    E, n_out, n_in = weights.shape
                    b = torch.randn(E - 1, n_out, rank, generator=g) * 0.1
                    a = torch.randn(E - 1, rank, n_in, generator=g) * 0.1
                    weights[1:] += b @ a


@pytest.mark.parametrize("rank", [0, 3])
def test_converted_model_gives_the_same_logits_and_routing(rank: int) -> None:
    model = _model()
    _upcycle(model, rank)
    fast = copy.deepcopy(model)
    assert convert_experts(fast) == 3
    assert all(isinstance(layer.mlp, SharedBaseMoeBlock) for layer in fast.model.layers)
    ids = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(2))
    stats_ref, stats_fast = model.new_expert_stats(), fast.new_expert_stats()
    with torch.inference_mode():
        for tokens in (ids, ids[:, :1], ids[:1, :1]):  # prefill-sized, batch decode, single
            torch.testing.assert_close(fast(tokens), model(tokens), atol=1e-5, rtol=1e-5)
    assert torch.equal(stats_fast.counts, stats_ref.counts)
    assert stats_ref.counts.sum() > 0


def test_experts_that_are_not_low_rank_apart_keep_the_stock_block() -> None:
    model = _model()  # independent random experts
    assert convert_experts(model, max_rank=8) == 0
