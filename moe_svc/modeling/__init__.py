"""Decoder-only Llama / Mixtral transformer: model, KV cache, router losses, HF checkpoints.

from moe_svc.modeling import load_pretrained
model = load_pretrained("path/to/hf_dir")
logits = model(input_ids)  # (B, T) -> (B, T, V)
"""

from moe_svc.modeling.checkpoint import load_pretrained, save_pretrained
from moe_svc.modeling.config import PRESETS, ModelConfig
from moe_svc.modeling.kv_cache import KVCache
from moe_svc.modeling.losses import ExpertStats, load_balancing_loss, router_z_loss
from moe_svc.modeling.model import CausalLM, CausalLMOutput
from moe_svc.modeling.moe import SparseMoeBlock

__all__ = [
    "PRESETS",
    "CausalLM",
    "CausalLMOutput",
    "ExpertStats",
    "KVCache",
    "ModelConfig",
    "SparseMoeBlock",
    "load_balancing_loss",
    "load_pretrained",
    "router_z_loss",
    "save_pretrained",
]
