"""The sparse MoE block computes Mixtral's function on every dispatch path (the model's
sorted dispatch and the direct dispatch that serving installs for decode steps)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from moe_svc.kernels.direct_moe import DirectDispatchMoeBlock
from moe_svc.modeling import ModelConfig, SparseMoeBlock

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _block(num_experts: int = 8, top_k: int = 2, **overrides: Any) -> SparseMoeBlock:
    torch.manual_seed(0)
    config = ModelConfig(
        hidden_size=32,
        intermediate_size=24,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=num_experts,
        num_experts_per_tok=top_k,
        **overrides,
    )
    block = SparseMoeBlock(config)
    for p in block.parameters():
        torch.nn.init.normal_(p, std=0.3)
    return block.eval()


def _reference(block: SparseMoeBlock, x: torch.Tensor, capacity: int | None = None) -> torch.Tensor:
    """Mixtral, token by token: softmax over all experts, top-k, renormalise, weighted sum."""
    inner = block.experts.intermediate_size
    flat = x.reshape(-1, x.shape[-1])
    probs = F.softmax(block.gate(flat).float(), dim=-1)
    weights, experts = torch.topk(probs, block.top_k, dim=-1)
    weights = weights / weights.sum(-1, keepdim=True)
    used = [0] * block.num_experts
    out = torch.zeros_like(flat)
    for t in range(flat.shape[0]):  # token order decides who is dropped at capacity
        for j in range(block.top_k):
            e = int(experts[t, j])
            used[e] += 1
            if capacity is not None and used[e] > capacity:
                continue
            gate_up = block.experts.gate_up_proj[e] @ flat[t]
            h = F.silu(gate_up[:inner]) * gate_up[inner:]
            out[t] += weights[t, j] * (block.experts.down_proj[e] @ h)
    return out.view_as(x)


@pytest.mark.parametrize("served", [False, True])
@pytest.mark.parametrize(("num_experts", "top_k"), [(8, 2), (4, 1), (8, 3)])
@pytest.mark.parametrize("tokens", [1, 2, 5, 64])
def test_inference_dispatch_matches_reference(
    num_experts: int, top_k: int, tokens: int, served: bool
) -> None:
    block = _block(num_experts, top_k)
    if served:
        block = DirectDispatchMoeBlock(block)
        assert not block.training  # else it would take the model's sorted path
    x = torch.randn(1, tokens, 32)
    with torch.inference_mode():
        out, router_logits, selected = block(x)
        expected = _reference(block, x)
    assert router_logits.shape == (tokens, num_experts)
    assert selected.shape == (tokens, top_k)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_training_path_matches_reference_with_gradients() -> None:
    block = _block().train()
    x = torch.randn(2, 9, 32, requires_grad=True)
    out, _, _ = block(x)
    torch.autograd.backward(out.square().sum())
    grads = []
    for p in block.parameters():
        assert p.grad is not None  # every parameter takes part in the forward
        grads.append(p.grad.clone())
    assert x.grad is not None
    x_grad = x.grad.clone()
    block.zero_grad()
    x.grad = None
    expected = _reference(block, x)
    torch.autograd.backward(expected.square().sum())
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad, x_grad, atol=1e-4, rtol=1e-4)
    for p, g in zip(block.parameters(), grads, strict=True):
        torch.testing.assert_close(p.grad, g, atol=1e-4, rtol=1e-4)
    assert block.gate.weight.grad is not None and block.gate.weight.grad.abs().sum() > 0


def test_capacity_factor_drops_overflow_in_training_only() -> None:
    block = _block(num_experts=4, top_k=2, capacity_factor=0.5)
    x = torch.randn(1, 24, 32)
    capacity = 6  # ceil(0.5 * 24 tokens * 2 slots / 4 experts)
    block.train()
    with torch.no_grad():
        dropped, _, _ = block(x)
    torch.testing.assert_close(dropped, _reference(block, x, capacity), atol=1e-5, rtol=1e-5)
    x.requires_grad_(True)
    with_grad, _, _ = block(x)
    torch.testing.assert_close(with_grad, dropped, atol=1e-5, rtol=1e-5)
    block.eval()  # inference is dropless whatever the config says
    with torch.no_grad():
        full, _, _ = block(x)
    torch.testing.assert_close(full, _reference(block, x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(full, dropped, atol=1e-3)


def test_jitter_perturbs_routing_only_in_training() -> None:
    block = _block(router_jitter_noise=0.5)
    x = torch.randn(1, 32, 32)
    with torch.no_grad():
        clean = block(x)[1]
        block.train()
        torch.manual_seed(1)
        noisy = block(x)[1]
    assert not torch.allclose(clean, noisy)
    block.eval()
    with torch.no_grad():
        torch.testing.assert_close(block(x)[1], clean)


def test_bfloat16_block_is_close_to_float32() -> None:
    block = _block()
    x = torch.randn(1, 40, 32)
    with torch.inference_mode():
        expected = block(x)[0]
        half = block.to(torch.bfloat16)
        # served: direct one-token, direct several-token, sorted
        for module in (half, DirectDispatchMoeBlock(half)):
            for tokens in (1, 5, 40):
                out = module(x[:, :tokens].bfloat16())[0]
                assert out.dtype == torch.bfloat16
                err = (out.float() - expected[:, :tokens]).abs().max() / expected.abs().max()
                assert err < 0.05
