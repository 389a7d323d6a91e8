"""The serving backend: turns a loaded model into its decode-optimised form, from outside.

`install_backend(model, kernel)` swaps modules, never the model's code:

- MoE blocks whose experts are a shared FFN plus low-rank deltas become
  `SharedBaseMoeBlock`s (`shared_experts`), the others `DirectDispatchMoeBlock`s;
- bias-free attentions become `DecodeAttention`s, norms `DecodeRMSNorm`s;
- with the kernel, the remaining bias-free nn.Linear layers become kernel
  `Projection`s (lm_head, dense MLPs, routers).

kernel=None is the torch reference backend (torch's ops throughout); a `SkinnyKernel`
(`skinny.load_kernel`) the native one, which runs decode steps in C and falls back
to torch's ops for prompts. Both compute the model's function to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from moe_svc.kernels.decode_layers import DecodeAttention, DecodeRMSNorm
from moe_svc.kernels.direct_moe import DirectDispatchMoeBlock
from moe_svc.kernels.projections import use_projections
from moe_svc.kernels.shared_experts import convert_experts
from moe_svc.kernels.skinny import SkinnyKernel
from moe_svc.modeling import CausalLM, SparseMoeBlock
from moe_svc.modeling.layers import Attention, RMSNorm

__all__ = ["InstalledBackend", "install_backend"]


@dataclass(frozen=True)
class InstalledBackend:
    """What `install_backend` swapped, for the load log and tests."""

    native: bool  # the native kernel runs decode steps (else torch's ops)
    shared_expert_layers: int  # MoE blocks served as shared base plus deltas
    native_attention_layers: int  # attentions whose decode step is one native call
    projections: int  # nn.Linear layers swapped for kernel Projections


def install_backend(
    model: CausalLM, kernel: SkinnyKernel | None, shared_experts: bool = True
) -> InstalledBackend:
    """Swap the model's modules for their serving forms (inference only; in place)."""
    shared = convert_experts(model, kernel=kernel) if shared_experts and model.config.is_moe else 0
    for layer in model.model.layers:
        if type(layer.mlp) is SparseMoeBlock:
            layer.mlp = DirectDispatchMoeBlock(layer.mlp)
        attention = layer.self_attn
        if type(attention) is Attention and attention.q_proj.bias is None:
            layer.self_attn = DecodeAttention(attention, kernel)
    _replace_norms(model, kernel)
    projections = use_projections(model, kernel) if kernel is not None else 0
    native_attention = sum(
        isinstance(m, DecodeAttention) and m.decode_kernel is not None for m in model.modules()
    )
    return InstalledBackend(kernel is not None, shared, native_attention, projections)


def _replace_norms(model: nn.Module, kernel: SkinnyKernel | None) -> None:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is RMSNorm:
                setattr(parent, name, DecodeRMSNorm(child, kernel))
