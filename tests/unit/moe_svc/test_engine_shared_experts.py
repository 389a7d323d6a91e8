"""The shared-base expert layout computes what Mixtral's block computes."""

from __future__ import annotations

import copy

import pytest
import torch

from moe_svc.kernels.shared_experts import SharedBaseMoeBlock, convert_experts
from moe_svc.modeling import CausalLM, ModelConfig
from tests.helpers.moe_blocks import moe_blocks


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
    for block in moe_blocks(model):
        torch.nn.init.normal_(block.gate.weight, std=1.0)
    return model


def _upcycle(model: CausalLM, rank: int) -> None:
    """Every expert = expert 0 (+ a random rank-`rank` delta for experts > 0)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for block in moe_blocks(model):
            experts = block.experts
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


def test_specialised_experts_stored_as_rounded_sums_convert_around_the_dense_one() -> None:
    """What build_default writes: W_e = fl(W + B_e A_e) with deltas ~1% of W, and the last
    experts left dense. The fp32 rounding noise must not count as rank, and the dense expert
    (not expert 0, which has its own delta) is the base."""
    model = _model()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for block in moe_blocks(model):
            experts = block.experts
            for weights in (experts.gate_up_proj, experts.down_proj):
                E, n_out, n_in = weights.shape
                dense = weights[0].clone()
                b = torch.randn(E - 1, n_out, 2, generator=g) * 0.02
                a = torch.randn(E - 1, 2, n_in, generator=g) * 0.02
                weights[:] = dense
                weights[: E - 1] += b @ a  # experts 0..E-2 specialised, E-1 dense
    fast = copy.deepcopy(model)
    assert convert_experts(fast, max_rank=8) == 3
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.inference_mode():
        torch.testing.assert_close(fast(ids), model(ids), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast(ids[:, :1]), model(ids[:, :1]), atol=1e-5, rtol=1e-5)
