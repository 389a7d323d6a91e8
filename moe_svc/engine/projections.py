"""Serving modules over the native decode kernels (moe_svc.engine.skinny).

`Projection` is x @ W^T with W kept in the layout of the path that runs it;
`fuse_attention_inputs`, `use_projections`, `use_decode_attention` and
`use_decode_norms` turn a loaded model into its serving form (moe_svc.loader calls
them in that order).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from moe_svc.engine import skinny
from moe_svc.engine.skinny import SkinnyKernel
from moe_svc.modeling.layers import Attention, RMSNorm

__all__ = [
    "Projection",
    "fuse_attention_inputs",
    "use_decode_attention",
    "use_decode_norms",
    "use_projections",
]


class Projection(nn.Module):
    """`x @ W^T` (no bias) for serving, with W kept in the layout of the path that runs it.

    With the kernel: W (N, K) row-major in the kernel's weight dtype, the kernel for
    up to skinny.MAX_ROWS rows and F.linear above (bf16 weights widened for the call).
    Without (or for shapes it does not take): W^T stored transposed, which MKL's
    sgemm reads about 30% faster than F.linear's for a few rows. An fp32 weight
    may be a shared Parameter (a tied embedding stays tied).
    """

    def __init__(self, weight: torch.Tensor, kernel: SkinnyKernel | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.kernel = kernel if kernel is not None and kernel.supports(weight) else None
        if self.kernel is not None:
            stored = weight.detach().to(self.kernel.weight_dtype).contiguous()
            if not (isinstance(weight, nn.Parameter) and stored.data_ptr() == weight.data_ptr()):
                weight = nn.Parameter(stored, requires_grad=False)
            self.weight: torch.Tensor | None = weight
            self.weight_t: torch.Tensor | None = None
        else:
            self.weight = None
            self.weight_t = nn.Parameter(weight.detach().t().contiguous(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_t is not None:
            return x @ self.weight_t
        assert self.kernel is not None and self.weight is not None
        rows = x.numel() // self.in_features
        if rows > skinny.MAX_ROWS or x.dtype != torch.float32:
            return F.linear(x, self.weight.to(x.dtype))
        out = self.kernel.linear(x.reshape(rows, self.in_features), self.weight)
        return out.view(*x.shape[:-1], self.out_features)


def fuse_attention_inputs(model: nn.Module, kernel: SkinnyKernel | None) -> int:
    """Give every bias-free attention one product for q, k and v; returns how many.

    A decode step is bound by its count of ops as much as by weight bytes: one
    product instead of three, and q and k rotated together.
    """
    fused = 0
    for module in model.modules():
        if isinstance(module, Attention) and module.q_proj.bias is None:
            module.fuse_qkv(lambda weight: Projection(weight, kernel))
            fused += 1
    return fused


def use_decode_attention(model: nn.Module, kernel: SkinnyKernel) -> int:
    """Give every attention the kernel can run its decode step in one native call.

    Call after `fuse_attention_inputs` and `use_projections`: q/k/v and o must be
    kernel Projections. Returns how many attentions run fused.
    """
    fused = 0
    for module in model.modules():
        if not isinstance(module, Attention):
            continue
        qkv, o = module.qkv_proj, module.o_proj
        if (
            isinstance(qkv, Projection)
            and isinstance(o, Projection)
            and qkv.weight is not None
            and o.weight is not None
            and qkv.weight.dtype == o.weight.dtype
            and module.head_dim % kernel.vector_width == 0
            and module.num_heads % module.num_kv_heads == 0
            and module.sliding_window is None
        ):
            module.decode_step = functools.partial(
                kernel.attention,
                layer_idx=module.layer_idx,
                heads=(module.num_heads, module.num_kv_heads, module.head_dim),
                qkv_weight=qkv.weight,
                o_weight=o.weight,
            )
            fused += 1
    return fused


def use_decode_norms(model: nn.Module, kernel: SkinnyKernel) -> int:
    """Give every fp32 RMSNorm a native path for decode rows; returns how many."""
    norms = [
        m for m in model.modules() if isinstance(m, RMSNorm) and m.weight.dtype == torch.float32
    ]
    for norm in norms:
        norm.decode_norm = functools.partial(
            kernel.rms_norm, weight=norm.weight.detach(), eps=norm.variance_epsilon
        )
    return len(norms)


def use_projections(model: nn.Module, kernel: SkinnyKernel) -> int:
    """Swap the model's bias-free nn.Linear layers the kernel takes for Projections.

    Weights stay shared (a tied lm_head keeps the embedding's tensor). Returns how
    many were swapped. For serving only: Projection has no training path.
    """
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.bias is None and kernel.supports(child.weight):
                setattr(parent, name, Projection(child.weight, kernel))
                swapped += 1
    return swapped
