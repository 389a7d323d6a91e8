"""Direct expert dispatch for decode steps: the MoE block the backend serves when experts differ.

The model's SparseMoeBlock sorts the (token, expert) pairs on the device, the
fastest way for a prompt. A decode step has a few pairs: there the routing is read
back to Python once and each chosen expert's weights are called as stored, with
matrix-vector products (small matmuls when decoding rows share an expert).
Gathering the chosen experts into one tensor for a batched matmul would copy their
weights, which costs more than the products at one token. Same function, same
experts chosen; the sums run in another order (equal to float rounding).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from moe_svc.modeling.moe import Experts, SparseMoeBlock, compute_dtype

__all__ = ["DirectDispatchMoeBlock"]

# Up to this many (token, expert) pairs inference takes the direct path: decoding
# batches. Past it, sorting on the device beats grouping the pairs in Python.
DIRECT_DISPATCH_MAX_PAIRS = 32
# Within the direct path, up to this many pairs each token runs its experts on its
# own: fewer ops than grouping by expert, though shared experts are read twice.
PER_TOKEN_MAX_PAIRS = 6


class DirectDispatchMoeBlock(SparseMoeBlock):
    """SparseMoeBlock that dispatches up to DIRECT_DISPATCH_MAX_PAIRS pairs from Python."""

    def __init__(self, block: SparseMoeBlock) -> None:
        nn.Module.__init__(self)  # not SparseMoeBlock's: the loaded weights are kept
        self.top_k = block.top_k
        self.num_experts = block.num_experts
        self.jitter_noise = block.jitter_noise
        self.capacity_factor = block.capacity_factor
        self.gate = block.gate
        self.experts = block.experts
        self.train(block.training)  # nn.Module.__init__ set training mode

    def forward(
        self, hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, T, C = hidden_states.shape
        grad = torch.is_grad_enabled() and (
            hidden_states.requires_grad or any(p.requires_grad for p in self.gate.parameters())
        )
        if grad or self.training or B * T * self.top_k > DIRECT_DISPATCH_MAX_PAIRS:
            return super().forward(hidden_states)
        x = hidden_states.reshape(-1, C)  # (N, C)
        router_logits = self.gate(x)  # (N, E)
        experts, weights = _route_in_python(router_logits, self.top_k)
        out = _dispatch(self.experts, x, experts, weights)
        selected_experts = torch.tensor(experts, device=x.device)
        return out.view(B, T, C), router_logits, selected_experts


def _route_in_python(
    router_logits: torch.Tensor, top_k: int
) -> tuple[list[list[int]], list[list[float]]]:
    """route() for a few tokens: one device-to-host copy instead of topk + softmax kernels."""
    experts, weights = [], []
    for row in router_logits.float().tolist():
        top = sorted(range(len(row)), key=row.__getitem__, reverse=True)[:top_k]
        exps = [math.exp(row[e] - row[top[0]]) for e in top]
        total = sum(exps)
        experts.append(top)
        weights.append([v / total for v in exps])
    return experts, weights


def _dispatch(
    module: Experts, x: torch.Tensor, experts: list[list[int]], weights: list[list[float]]
) -> torch.Tensor:
    """x (N, C) with per-token expert ids and weights as Python lists -> (N, C).

    Every op here costs microseconds of dispatch while the weights stream through
    the caches, so the path is kept to a few matrix-vector kernels per expert.
    """
    dtype = compute_dtype(module.down_proj)
    upcast = dtype != module.down_proj.dtype
    x_c = x.to(dtype) if upcast else x
    if len(experts) * len(experts[0]) <= PER_TOKEN_MAX_PAIRS:
        # a few pairs: each token's experts as matrix-vector products, no gather/scatter
        per_token = [
            _one_token(module, x_c[t], e, w, upcast)
            for t, (e, w) in enumerate(zip(experts, weights, strict=True))
        ]
        out = per_token[0].view(1, -1) if len(per_token) == 1 else torch.stack(per_token)
        return out.to(x.dtype) if upcast else out
    # Several decoding rows: sort the pairs by expert in Python (no sort kernels),
    # gather the rows once, one small matmul per expert on its slice.
    by_expert: list[list[tuple[int, float]]] = [[] for _ in range(module.num_experts)]
    for t, (token_experts, token_weights) in enumerate(zip(experts, weights, strict=True)):
        for expert, weight in zip(token_experts, token_weights, strict=True):
            by_expert[expert].append((t, weight))
    rows = torch.tensor([t for routed in by_expert for t, _ in routed], device=x.device)
    scale = torch.tensor(
        [[w] for routed in by_expert for _, w in routed], dtype=dtype, device=x.device
    )
    x_sorted = x_c.index_select(0, rows)  # (N*k, C)
    y_sorted = torch.empty_like(x_sorted)
    inner = module.intermediate_size
    start = 0
    for expert, routed in enumerate(by_expert):
        if not routed:
            continue
        end = start + len(routed)
        gate_up, down = module.gate_up_proj[expert], module.down_proj[expert]
        if upcast:
            gate_up, down = gate_up.to(dtype), down.to(dtype)
        g_u = F.linear(x_sorted[start:end], gate_up)  # (n, 2I)
        h = F.silu(g_u[:, :inner]).mul_(g_u[:, inner:]).mul_(scale[start:end])
        torch.mm(h, down.t(), out=y_sorted[start:end])
        start = end
    out = torch.zeros_like(x_c).index_add_(0, rows, y_sorted)
    return out.to(x.dtype) if upcast else out


def _mv_swiglu(gate_up: torch.Tensor, x_t: torch.Tensor, inner: int) -> torch.Tensor:
    g_u = torch.mv(gate_up, x_t)  # (2I,)
    return F.silu(g_u[:inner]).mul_(g_u[inner:])  # (I,)


def _one_token(
    module: Experts, x_t: torch.Tensor, experts: list[int], weights: list[float], upcast: bool
) -> torch.Tensor:
    """The k experts of one token (C,) -> (C,)."""
    inner = module.intermediate_size
    y, scale = None, 1.0
    for expert, weight in zip(experts, weights, strict=True):
        gate_up, down = module.gate_up_proj[expert], module.down_proj[expert]
        if upcast:
            gate_up, down = gate_up.to(x_t.dtype), down.to(x_t.dtype)
        h = _mv_swiglu(gate_up, x_t, inner)
        if y is None:
            y, scale = torch.mv(down, h), weight
        else:
            # y = scale * y + weight * (down @ h) in one kernel
            y = torch.addmv(y, down, h, beta=scale, alpha=weight)
            scale = 1.0
    assert y is not None
    return y if scale == 1.0 else y * scale  # top-1 weights renormalise to exactly 1
