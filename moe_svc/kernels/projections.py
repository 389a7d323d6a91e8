"""`Projection`: a serving nn.Linear (no bias) whose weight sits in the layout of the path
that runs it, the native kernel (moe_svc.kernels.skinny) or MKL; `use_projections`
swaps a model's bias-free nn.Linear layers for it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moe_svc.kernels import skinny
from moe_svc.kernels.skinny import SkinnyKernel

__all__ = ["Projection", "use_projections"]


class Projection(nn.Module):
    """`x @ W^T` (no bias) for serving, with W kept in the layout of the path that runs it.

    With the kernel: W (N, K) row-major in the kernel's weight dtype, the kernel for
    up to skinny.MAX_ROWS rows and F.linear above (bf16 weights widened, int8 rows
    unpacked for the call).
    Without (or for shapes it does not take): W^T stored transposed, which MKL's
    sgemm reads about 30% faster than F.linear's for a few rows. An fp32 weight
    may be a shared Parameter (a tied embedding stays tied).
    """

    def __init__(self, weight: torch.Tensor, kernel: SkinnyKernel | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight.shape
        self.kernel = kernel if kernel is not None and kernel.supports(weight) else None
        if self.kernel is not None:
            stored = self.kernel.store(weight)
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
            return F.linear(x, self.dense_weight().to(x.dtype))
        out = self.kernel.linear(x.reshape(rows, self.in_features), self.weight)
        return out.view(*x.shape[:-1], self.out_features)

    def dense_weight(self) -> torch.Tensor:
        """W (N, K) as a float tensor (packed rows unpacked: prefill runs MKL's sgemm)."""
        if self.weight_t is not None:
            return self.weight_t.t()
        assert self.weight is not None
        return skinny.unpack(self.weight)


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
