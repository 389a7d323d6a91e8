"""Transformer building blocks shared by the dense and MoE models.

RMSNorm, rotary embeddings, grouped-query attention and the SwiGLU feed-forward,
each computing exactly what transformers' Llama/Mixtral modules compute (same
parameter names, same fp32 upcasts) so that checkpoints load unchanged and logits
agree to float rounding.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

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
    "apply_rotary",
    "apply_rotary_pos_emb",
]


# x (B, 1, C), rope, plan, cache -> attention output (B, 1, C)
DecodeStep = Callable[
    [torch.Tensor, tuple[torch.Tensor, torch.Tensor], AttentionPlan, KVCache], torch.Tensor
]
# rows of a decode step that go to the native kernels (moe_svc.engine.skinny.MAX_ROWS);
# more rows (prompt prefill) go to torch's ops, faster there
DECODE_STEP_MAX_ROWS = 16


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.variance_epsilon = eps
        # serving: the norm of a decode step's rows in one native call
        # (moe_svc.engine.projections.use_decode_norms)
        self.decode_norm: Callable[[torch.Tensor], torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        decode = x.dtype == torch.float32 and x.numel() // x.shape[-1] <= DECODE_STEP_MAX_ROWS
        if self.decode_norm is not None and decode:  # a decode step: one native call
            return self.decode_norm(x)
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            # one op, bitwise equal to the lines below in fp32 (decoding is op-bound)
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.variance_epsilon)
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
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


@functools.cache
def _half_rotation(head_dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """R with x @ R == rotate_half(x) exactly (one signed 1 per column, the rest zeros)."""
    half = head_dim // 2
    with torch.inference_mode(False):  # a normal tensor: usable with and without autograd
        rotation = torch.zeros(head_dim, head_dim, dtype=dtype, device=device)
        index = torch.arange(half, device=device)
        rotation[index + half, index] = -1
        rotation[index, index + half] = 1
    return rotation


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, hd) rotated by cos/sin (B, 1, T, hd): x cos + rotate_half(x) sin.

    rotate_half as a product with a fixed +-1 matrix gives the same values in one
    op instead of four (chunk, neg, cat); decoding is bound by the count of ops.
    """
    return x * cos + (x @ _half_rotation(x.shape[-1], x.dtype, x.device)) * sin


def apply_rotary_pos_emb(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hd): broadcast over heads
    return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)


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
        # serving: q, k and v as one product over their stacked weights (fuse_qkv)
        self.qkv_proj: nn.Module | None = None
        # serving: a whole decode step (T = 1 with a cache) in one call, set by
        # moe_svc.engine.projections.use_decode_attention
        self.decode_step: DecodeStep | None = None

    def fuse_qkv(self, projection: Callable[[torch.Tensor], nn.Module]) -> None:
        """Compute q, k and v with one product (serving only: q/k/v_proj are removed).

        projection: makes the module for x @ W^T from the stacked W (nh + 2 nkv) hd x C.
        """
        assert self.q_proj.bias is None, "fused projections take no bias"
        with torch.no_grad():
            stacked = torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight])
        self.qkv_proj = projection(stacked)
        del self.q_proj, self.k_proj, self.v_proj  # no second copy of the weights

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        plan: AttentionPlan,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        if (
            self.decode_step is not None
            and cache is not None
            and T == 1
            and plan.slots is not None
            and x.dtype == torch.float32
            and B <= DECODE_STEP_MAX_ROWS
        ):
            return self.decode_step(x, rope, plan, cache)
        nh, nkv = self.num_heads, self.num_kv_heads
        if self.qkv_proj is not None:
            qkv = self.qkv_proj(x).view(B, T, nh + 2 * nkv, self.head_dim).transpose(1, 2)
            cos, sin = rope[0][:, None], rope[1][:, None]
            qk = apply_rotary(qkv[:, : nh + nkv], cos, sin)  # q and k rotated together
            q, k, v = qk[:, :nh], qk[:, nh:], qkv[:, nh + nkv :]
        else:
            q = self.q_proj(x).view(B, T, nh, self.head_dim).transpose(1, 2)  # (B, nh, T, hd)
            k = self.k_proj(x).view(B, T, nkv, self.head_dim).transpose(1, 2)  # (B, nkv, T, hd)
            v = self.v_proj(x).view(B, T, nkv, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, *rope)
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
