"""Decode-optimised stand-ins for the model's RMSNorm and Attention, installed by the backend.

Each is a subclass of the model's module holding the same weights, built from a
loaded module (`moe_svc.kernels.backend` swaps them in); the model's own forward
stays the reference. A decode step is bound by its count of ops as much as by the
bytes of weights it reads, so these cut ops:

- `DecodeRMSNorm`: one op (F.rms_norm, bitwise the model's maths in fp32), or one
  native call for a decode step's rows;
- `DecodeAttention`: q, k and v as one product over their stacked weights, q and k
  rotated together, and with the native kernel a whole decode step (projections,
  rotary, cache write, attention, output projection) in one call.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from moe_svc.kernels.projections import Projection
from moe_svc.kernels.skinny import MAX_ROWS, SkinnyKernel
from moe_svc.modeling.kv_cache import AttentionPlan, KVCache
from moe_svc.modeling.layers import Attention, RMSNorm

__all__ = ["DecodeAttention", "DecodeRMSNorm", "apply_rotary"]


class DecodeRMSNorm(RMSNorm):
    """RMSNorm computed in one op, or one native call for up to MAX_ROWS fp32 rows."""

    def __init__(self, norm: RMSNorm, kernel: SkinnyKernel | None) -> None:
        nn.Module.__init__(self)  # not RMSNorm's: the loaded weight is kept
        self.weight = norm.weight
        self.variance_epsilon = norm.variance_epsilon
        self.kernel = kernel
        self.train(norm.training)  # nn.Module.__init__ set training mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or self.weight.dtype != torch.float32:
            return super().forward(x)  # the fp32 upcast of low-precision inputs
        if self.kernel is not None and x.numel() // x.shape[-1] <= MAX_ROWS:
            return self.kernel.rms_norm(x, self.weight.detach(), self.variance_epsilon)
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.variance_epsilon)


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
    op instead of four (chunk, neg, cat).
    """
    return x * cos + (x @ _half_rotation(x.shape[-1], x.dtype, x.device)) * sin


class DecodeAttention(Attention):
    """Attention with q, k and v as one product, and a native decode step where it applies.

    The model's Attention must be bias-free. Its o_proj becomes a kernel Projection
    where the kernel takes it; the native decode step needs both products on the
    kernel in one weight dtype, a head size of whole vectors and no sliding window.
    """

    def __init__(self, attention: Attention, kernel: SkinnyKernel | None) -> None:
        nn.Module.__init__(self)  # not Attention's: the loaded weights are kept
        assert attention.q_proj.bias is None, "fused projections take no bias"
        self.layer_idx = attention.layer_idx
        self.head_dim = attention.head_dim
        self.num_heads = attention.num_heads
        self.num_kv_heads = attention.num_kv_heads
        self.sliding_window = attention.sliding_window
        with torch.no_grad():
            stacked = torch.cat(
                [attention.q_proj.weight, attention.k_proj.weight, attention.v_proj.weight]
            )  # ((nh + 2 nkv) hd, C)
        self.qkv_proj: Projection = Projection(stacked, kernel)
        o_proj: nn.Module = attention.o_proj
        if kernel is not None and o_proj.bias is None and kernel.supports(o_proj.weight):
            o_proj = Projection(o_proj.weight, kernel)
        self.o_proj = o_proj
        # the kernel that runs a whole decode step, None where torch's ops run it
        self.decode_kernel: SkinnyKernel | None = None
        if kernel is not None and self._native_fits(kernel):
            self.decode_kernel = kernel
        self.train(attention.training)  # nn.Module.__init__ set training mode

    def _native_fits(self, kernel: SkinnyKernel) -> bool:
        qkv, o = self.qkv_proj, self.o_proj
        return (
            isinstance(o, Projection)
            and qkv.weight is not None
            and o.weight is not None
            and qkv.weight.dtype == o.weight.dtype
            and self.head_dim % kernel.vector_width == 0
            and self.num_heads % self.num_kv_heads == 0
            and self.sliding_window is None
        )

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        plan: AttentionPlan,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        B, T, _ = x.shape
        if (
            self.decode_kernel is not None
            and cache is not None
            and T == 1
            and plan.slots is not None
            and x.dtype == torch.float32
            and B <= MAX_ROWS
        ):
            assert self.qkv_proj.weight is not None and isinstance(self.o_proj, Projection)
            assert self.o_proj.weight is not None
            heads = (self.num_heads, self.num_kv_heads, self.head_dim)
            return self.decode_kernel.attention(
                x,
                rope,
                plan,
                cache,
                self.layer_idx,
                heads,
                self.qkv_proj.weight,
                self.o_proj.weight,
            )
        nh, nkv = self.num_heads, self.num_kv_heads
        qkv = self.qkv_proj(x).view(B, T, nh + 2 * nkv, self.head_dim).transpose(1, 2)
        cos, sin = rope[0][:, None], rope[1][:, None]
        qk = apply_rotary(qkv[:, : nh + nkv], cos, sin)  # q and k rotated together
        q, k, v = qk[:, :nh], qk[:, nh:], qkv[:, nh + nkv :]
        return self.attend(q, k, v, plan, cache)
