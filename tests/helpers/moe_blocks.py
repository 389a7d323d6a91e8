"""Typed access to a Mixtral's MoE blocks (an nn.ModuleList yields plain nn.Modules)."""

from __future__ import annotations

from moe_svc.modeling import CausalLM, SparseMoeBlock
from moe_svc.modeling.model import DecoderLayer

__all__ = ["moe_blocks"]


def moe_blocks(model: CausalLM) -> list[SparseMoeBlock]:
    """Each decoder layer's sparse MoE block, in order (a dense layer fails the assert)."""
    blocks = []
    for layer in model.model.layers:
        assert isinstance(layer, DecoderLayer) and isinstance(layer.mlp, SparseMoeBlock)
        blocks.append(layer.mlp)
    return blocks
