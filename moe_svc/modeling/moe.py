"""Sparse Mixture-of-Experts feed-forward (Mixtral semantics) with sorted expert dispatch.

Parameter names and shapes are those of transformers 5.x `MixtralSparseMoeBlock`:
`gate.weight` (E, C) is the router, `experts.gate_up_proj` (E, 2I, C) holds each
expert's SwiGLU gate and up projections stacked, `experts.down_proj` (E, C, I).

Dispatch is sorted: the N*k (token, slot) pairs are sorted by expert once; each
expert gathers its rows, runs two dense matmuls and scatter-adds its weighted
output back. No per-expert boolean mask is scanned over all tokens. (Serving swaps
in a block that dispatches decode steps without sorting: moe_svc.kernels.)

On CPUs without AMX, bf16/fp16 expert weights are upcast per expert and the
products run in fp32 (see `compute_dtype`); the weights stay stored in bf16.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from common.cpu import has_fast_bf16
from moe_svc.modeling.config import ModelConfig

__all__ = ["Experts", "SparseMoeBlock", "compute_dtype", "route"]


def compute_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype expert products run in for weights stored as `weight`."""
    low = weight.dtype in (torch.bfloat16, torch.float16)
    if low and weight.device.type == "cpu" and not has_fast_bf16():
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
        dtype = compute_dtype(self.down_proj)
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


class SparseMoeBlock(nn.Module):
    """Top-k sparse MoE feed-forward, Mixtral's block.

    Each token's router logits give a softmax over all E experts in fp32; its k
    most probable experts are kept and their weights renormalised to sum to one;
    the output is the weighted sum of those k experts' SwiGLU outputs. Equivalent to
    a standard MoE with full capacity at inference: no token is dropped. Training
    may add router jitter (Switch Transformer: multiplicative noise on the router
    input only) and a capacity factor that drops the overflow of each expert.

    Returns the router logits with the output, for the load-balancing and z losses,
    and the experts chosen, for the routing statistics.
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
        router_logits = self.gate(self.jitter(x))  # (N, E)
        routing_weights, selected_experts = route(router_logits, self.top_k)  # (N, k) each
        out = self.experts(x, selected_experts, routing_weights, self.capacity(B * T))
        return out.view(B, T, C), router_logits, selected_experts

    def jitter(self, x: torch.Tensor) -> torch.Tensor:
        """The router's input: x, times uniform noise in 1 +- jitter_noise when training."""
        if not (self.training and self.jitter_noise > 0):
            return x
        noise = torch.empty_like(x).uniform_(1.0 - self.jitter_noise, 1.0 + self.jitter_noise)
        return x * noise

    def capacity(self, tokens: int) -> int | None:
        """Most (token, expert) pairs one expert takes when training; None: all of them."""
        if not self.training or self.capacity_factor is None:
            return None
        return math.ceil(self.capacity_factor * tokens * self.top_k / self.num_experts)
