"""Sparse Mixture-of-Experts feed-forward (Mixtral semantics) with sorted expert dispatch.

Parameter names and shapes are those of transformers 5.x `MixtralSparseMoeBlock`:
`gate.weight` (E, C) is the router, `experts.gate_up_proj` (E, 2I, C) holds each
expert's SwiGLU gate and up projections stacked, `experts.down_proj` (E, C, I).

Two dispatch paths compute the same function:
- sorted (prefill, training): the N*k (token, slot) pairs are sorted by expert once;
  each expert gathers its rows, runs two dense matmuls and scatter-adds its weighted
  output back. No per-expert boolean mask is scanned over all tokens.
- direct (decoding: at most DIRECT_DISPATCH_MAX_PAIRS pairs, inference only): the
  routing is read back to Python once and each chosen expert's weights are called
  as stored, with matrix-vector products (small matmuls when decoding rows share
  an expert). Gathering the chosen experts into one tensor for a batched matmul
  would copy their weights, which costs more than the products at one token.

On CPUs without AMX, bf16/fp16 expert weights are upcast per expert and the
products run in fp32 (see `_cpu_lacks_fast_bf16`); the weights stay stored in bf16.
"""

from __future__ import annotations

import math
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

from moe_svc.modeling.config import ModelConfig

__all__ = ["Experts", "SparseMoeBlock", "route"]

# Up to this many (token, expert) pairs inference takes the direct path: decoding
# batches. Past it, sorting on the device beats grouping the pairs in Python.
DIRECT_DISPATCH_MAX_PAIRS = 32
# Within the direct path, up to this many pairs each token runs its experts on its
# own: fewer ops than grouping by expert, though shared experts are read twice.
PER_TOKEN_MAX_PAIRS = 6


@cache
def _cpu_lacks_fast_bf16() -> bool:
    # Without AMX, oneDNN's bf16 matmul peaks no higher than fp32 FMA and pays for a
    # weight reorder on every call: measured 1.7-2.5x slower than fp32 on a 2-core
    # Sapphire Rapids VM (fp16 no faster than fp32). Low-precision weights are then
    # better upcast per expert, trading a conversion for the faster fp32 kernels.
    is_amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return not (is_amx is not None and is_amx())


def _compute_dtype(weight: torch.Tensor) -> torch.dtype:
    low = weight.dtype in (torch.bfloat16, torch.float16)
    if low and weight.device.type == "cpu" and _cpu_lacks_fast_bf16():
        return torch.float32
    return weight.dtype


def route(router_logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k experts per token and their renormalised weights, both (N, k).

    Mixtral takes softmax over all experts, keeps the top k probabilities and
    rescales them to sum to one. That equals a softmax over the k largest logits,
    which skips the full softmax and the division (softmax is monotonic, so the
    same experts are chosen). fp32 throughout, as in Mixtral.
    """
    top_logits, selected_experts = torch.topk(router_logits.float(), top_k, dim=-1)
    routing_weights = torch.softmax(top_logits, dim=-1)
    return routing_weights, selected_experts


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


class Experts(nn.Module):
    """E SwiGLU experts with stacked weights; computes sum_j w_j * expert_{e_j}(x) per token."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        E, C, inner = config.num_local_experts, config.hidden_size, config.intermediate_size
        self.num_experts = E
        self.intermediate_size = inner
        self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * inner, C))
        self.down_proj = nn.Parameter(torch.empty(E, C, inner))

    def forward(
        self,
        x: torch.Tensor,
        selected_experts: torch.Tensor,
        routing_weights: torch.Tensor,
        capacity: int | None = None,
    ) -> torch.Tensor:
        """x (N, C), selected_experts and routing_weights (N, k) -> (N, C), sorted dispatch.

        capacity: most pairs an expert processes (training only); pairs beyond it,
        in token order, are dropped: their expert output is zero.
        """
        k = selected_experts.shape[1]
        flat_experts = selected_experts.reshape(-1)  # (N*k,)
        order = torch.argsort(flat_experts, stable=True)  # stable: token order within an expert
        counts = torch.bincount(flat_experts, minlength=self.num_experts).tolist()
        token_idx = order // k  # (N*k,) token of each sorted pair
        dtype = _compute_dtype(self.down_proj)
        w_sorted = routing_weights.reshape(-1)[order].to(dtype)[:, None]  # (N*k, 1)
        out = torch.zeros(x.shape, dtype=dtype, device=x.device)
        start = 0
        for expert, n in enumerate(counts):
            end = start + (n if capacity is None else min(n, capacity))
            if end > start:
                rows = token_idx[start:end]
                # gather and scatter per expert: each slice is still in cache when used
                h = self._swiglu(x.index_select(0, rows).to(dtype), expert)  # (n, I)
                # scaling the I-wide hidden instead of the C-wide output: same product, fewer flops
                h = h * w_sorted[start:end]
                out.index_add_(0, rows, F.linear(h, self.down_proj[expert].to(dtype)))
            start += n
        return out.to(x.dtype)

    def _swiglu(self, x: torch.Tensor, expert: int) -> torch.Tensor:
        gate_up = F.linear(x, self.gate_up_proj[expert].to(x.dtype))  # (n, 2I)
        inner = self.intermediate_size
        return F.silu(gate_up[:, :inner]) * gate_up[:, inner:]  # (n, I)

    def forward_direct(
        self, x: torch.Tensor, experts: list[list[int]], weights: list[list[float]]
    ) -> torch.Tensor:
        """x (N, C) with per-token expert ids and weights as Python lists -> (N, C).

        Every op here costs microseconds of dispatch while the weights stream through
        the caches, so the path is kept to a few matrix-vector kernels per expert.
        """
        dtype = _compute_dtype(self.down_proj)
        upcast = dtype != self.down_proj.dtype
        x_c = x.to(dtype) if upcast else x
        if len(experts) * len(experts[0]) <= PER_TOKEN_MAX_PAIRS:
            # a few pairs: each token's experts as matrix-vector products, no gather/scatter
            per_token = [
                self._one_token(x_c[t], e, w, upcast)
                for t, (e, w) in enumerate(zip(experts, weights, strict=True))
            ]
            out = per_token[0].view(1, -1) if len(per_token) == 1 else torch.stack(per_token)
            return out.to(x.dtype) if upcast else out
        # Several decoding rows: sort the pairs by expert in Python (no sort kernels),
        # gather the rows once, one small matmul per expert on its slice.
        by_expert: list[list[tuple[int, float]]] = [[] for _ in range(self.num_experts)]
        for t, (token_experts, token_weights) in enumerate(zip(experts, weights, strict=True)):
            for expert, weight in zip(token_experts, token_weights, strict=True):
                by_expert[expert].append((t, weight))
        rows = torch.tensor([t for routed in by_expert for t, _ in routed], device=x.device)
        scale = torch.tensor(
            [[w] for routed in by_expert for _, w in routed], dtype=dtype, device=x.device
        )
        x_sorted = x_c.index_select(0, rows)  # (N*k, C)
        y_sorted = torch.empty_like(x_sorted)
        inner = self.intermediate_size
        start = 0
        for expert, routed in enumerate(by_expert):
            if not routed:
                continue
            end = start + len(routed)
            gate_up, down = self.gate_up_proj[expert], self.down_proj[expert]
            if upcast:
                gate_up, down = gate_up.to(dtype), down.to(dtype)
            g_u = F.linear(x_sorted[start:end], gate_up)  # (n, 2I)
            h = F.silu(g_u[:, :inner]).mul_(g_u[:, inner:]).mul_(scale[start:end])
            torch.mm(h, down.t(), out=y_sorted[start:end])
            start = end
        out = torch.zeros_like(x_c).index_add_(0, rows, y_sorted)
        return out.to(x.dtype) if upcast else out

    @staticmethod
    def _mv_swiglu(gate_up: torch.Tensor, x_t: torch.Tensor, inner: int) -> torch.Tensor:
        g_u = torch.mv(gate_up, x_t)  # (2I,)
        return F.silu(g_u[:inner]).mul_(g_u[inner:])  # (I,)

    def _one_token(
        self, x_t: torch.Tensor, experts: list[int], weights: list[float], upcast: bool
    ) -> torch.Tensor:
        """The k experts of one token (C,) -> (C,)."""
        inner = self.intermediate_size
        y, scale = None, 1.0
        for expert, weight in zip(experts, weights, strict=True):
            gate_up, down = self.gate_up_proj[expert], self.down_proj[expert]
            if upcast:
                gate_up, down = gate_up.to(x_t.dtype), down.to(x_t.dtype)
            h = self._mv_swiglu(gate_up, x_t, inner)
            if y is None:
                y, scale = torch.mv(down, h), weight
            else:
                # y = scale * y + weight * (down @ h) in one kernel
                y = torch.addmv(y, down, h, beta=scale, alpha=weight)
                scale = 1.0
        assert y is not None
        return y if scale == 1.0 else y * scale  # top-1 weights renormalise to exactly 1


class SparseMoeBlock(nn.Module):
    """Top-k sparse MoE feed-forward.

    Equivalent to Mixtral's block: router softmax in fp32 over all experts, top-k,
    renormalised weights; at inference it is dropless (every token reaches all k of
    its experts, as a standard MoE with full capacity). Training may add router
    jitter (Switch Transformer: multiplicative noise on the router input only) and a
    capacity factor that drops the overflow of each expert.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.num_experts = config.num_local_experts
        self.jitter_noise = config.router_jitter_noise
        self.capacity_factor = config.capacity_factor
        self.gate = nn.Linear(config.hidden_size, config.num_local_experts, bias=False)
        self.experts = Experts(config)

    def forward(
        self, hidden_states: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, C) -> output (B, T, C), router_logits (B*T, E), selected_experts (B*T, k)."""
        B, T, C = hidden_states.shape
        x = hidden_states.reshape(-1, C)  # (N, C)
        router_input = x
        if self.training and self.jitter_noise > 0:
            noise = torch.empty_like(x).uniform_(1.0 - self.jitter_noise, 1.0 + self.jitter_noise)
            router_input = x * noise
        router_logits = self.gate(router_input)  # (N, E)
        grad = torch.is_grad_enabled() and (x.requires_grad or self.gate.weight.requires_grad)
        if not grad and not self.training and B * T * self.top_k <= DIRECT_DISPATCH_MAX_PAIRS:
            experts, weights = _route_in_python(router_logits, self.top_k)
            out = self.experts.forward_direct(x, experts, weights)
            selected_experts = torch.tensor(experts, device=x.device)
        else:
            routing_weights, selected_experts = route(router_logits, self.top_k)
            capacity = None
            if self.training and self.capacity_factor is not None:
                capacity = math.ceil(self.capacity_factor * B * T * self.top_k / self.num_experts)
            out = self.experts(x, selected_experts, routing_weights, capacity)
        return out.view(B, T, C), router_logits, selected_experts
