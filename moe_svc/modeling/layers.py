"""Transformer building blocks shared by the dense and MoE models.

RMSNorm, rotary embeddings, grouped-query attention and the SwiGLU feed-forward,
each computing exactly what transformers' Llama/Mixtral modules compute (same
parameter names, same fp32 upcasts) so that checkpoints load unchanged and logits
agree to float rounding. Serving swaps some of them for decode-optimised
subclasses from outside (moe_svc.kernels); nothing here knows about that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moe_svc.modeling.config import ModelConfig
from moe_svc.modeling.kv_cache import AttentionPlan, KVCache

__all__ = [
    "MLP",
    "Attention",
    "RMSNorm",
    "RotaryEmbedding",
    "apply_rotary_pos_emb",
    "rotate_half",
]


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight over the last dim (Zhang & Sennrich 2019)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in fp32: bf16 has too few mantissa bits for the mean of squares
        input_dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(input_dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables of rotary position embeddings (RoFormer), computed from positions."""

    inv_freq: torch.Tensor

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        assert config.head_dim is not None
        self.head_dim = config.head_dim
        self.rope_theta = config.rope_theta
        self.register_buffer("inv_freq", self.compute_inv_freq(), persistent=False)

    def compute_inv_freq(self, device: torch.device | str | None = None) -> torch.Tensor:
        exponents = (
            torch.arange(0, self.head_dim, 2, dtype=torch.float, device=device) / self.head_dim
        )
        return 1.0 / (self.rope_theta**exponents)

    def forward(
        self, position_ids: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # angles in fp32: positions times frequencies lose precision in bf16 for long contexts
        freqs = position_ids[..., None].float() * self.inv_freq  # (B, T, hd/2)
        emb = torch.cat((freqs, freqs), dim=-1)  # (B, T, hd)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the halves of the last dim: each pair turned by 90 degrees."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q (B, nh, T, hd) and k (B, nkv, T, hd) rotated by cos/sin (B, T, hd)."""
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hd): broadcast over heads
    q_rotated = q * cos + rotate_half(q) * sin
    k_rotated = k * cos + rotate_half(k) * sin
    return q_rotated, k_rotated


class Attention(nn.Module):
    """Causal grouped-query self-attention through F.scaled_dot_product_attention."""

    def __init__(self, config: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        assert config.head_dim is not None
        self.layer_idx = layer_idx
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        bias = config.attention_bias
        C, hd = config.hidden_size, config.head_dim
        self.q_proj = nn.Linear(C, self.num_heads * hd, bias=bias)
        self.k_proj = nn.Linear(C, self.num_kv_heads * hd, bias=bias)
        self.v_proj = nn.Linear(C, self.num_kv_heads * hd, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * hd, C, bias=bias)
        self.sliding_window = config.sliding_window

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        plan: AttentionPlan,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); with a cache, attends over its keys and appends T."""
        B, T, _ = x.shape
        nh, nkv, hd = self.num_heads, self.num_kv_heads, self.head_dim
        q = self.q_proj(x).view(B, T, nh, hd).transpose(1, 2)  # (B, nh, T, hd)
        k = self.k_proj(x).view(B, T, nkv, hd).transpose(1, 2)  # (B, nkv, T, hd)
        v = self.v_proj(x).view(B, T, nkv, hd).transpose(1, 2)  # (B, nkv, T, hd)
        q, k = apply_rotary_pos_emb(q, k, *rope)
        return self.attend(q, k, v, plan, cache)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        plan: AttentionPlan,
        cache: KVCache | None,
    ) -> torch.Tensor:
        """o_proj(softmax(q k^T / sqrt(hd) + mask) v) for rotated q, k and v -> (B, T, C)."""
        B, _, T, _ = q.shape
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v, plan)  # (B, nkv, S, hd)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=plan.attn_mask,
            is_causal=plan.attn_mask is None and plan.is_causal,
            enable_gqa=self.num_heads != self.num_kv_heads,  # no repeat_kv copy of the keys
        )  # (B, nh, T, hd)
        y = y.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim)
        out: torch.Tensor = self.o_proj(y)
        return out


class MLP(nn.Module):
    """Dense SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        C, inner, bias = config.hidden_size, config.intermediate_size, config.mlp_bias
        self.gate_proj = nn.Linear(C, inner, bias=bias)
        self.up_proj = nn.Linear(C, inner, bias=bias)
        self.down_proj = nn.Linear(inner, C, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return out
