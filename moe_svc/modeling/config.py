"""Model configuration, read from and written to Hugging Face `config.json` files.

Field names follow transformers (`LlamaConfig`, `MixtralConfig`) so that a
config.json maps onto `ModelConfig` key by key; `model_type` picks the feed-forward:
`llama` is dense SwiGLU, `mixtral` is a sparse MoE of SwiGLU experts.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["PRESETS", "ModelConfig"]

SUPPORTED_MODEL_TYPES = ("llama", "mixtral")

# Keys of a config.json that change what the model computes but that we do not
# implement: refuse them instead of silently computing something else.
_UNSUPPORTED_IF_SET: dict[str, Any] = {"pretraining_tp": 1}

MOE_KEYS = (
    "num_local_experts",
    "num_experts_per_tok",
    "router_jitter_noise",
    "capacity_factor",
    "router_aux_loss_coef",
    "router_z_loss_coef",
)


@dataclass
class ModelConfig:
    model_type: str = "mixtral"  # "llama" (dense FFN) or "mixtral" (sparse MoE FFN)
    vocab_size: int = 32000
    hidden_size: int = 576  # d_model
    intermediate_size: int = 1536  # SwiGLU width of the dense FFN, or of each expert
    num_hidden_layers: int = 30
    num_attention_heads: int = 9
    num_key_value_heads: int = 3  # < num_attention_heads means grouped-query attention
    head_dim: int | None = None  # None: hidden_size // num_attention_heads
    max_position_embeddings: int = 8192
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = False  # lm_head shares the embedding matrix
    attention_bias: bool = False  # Llama option: biases on q/k/v/o projections
    mlp_bias: bool = False  # Llama option: biases on the dense FFN projections
    sliding_window: int | None = None  # Mistral-style local attention; None = full
    # MoE (model_type == "mixtral")
    num_local_experts: int = 8
    num_experts_per_tok: int = 2  # top-k
    router_jitter_noise: float = 0.0  # training only: multiplicative uniform noise on inputs
    capacity_factor: float | None = None  # training only: None = dropless
    router_aux_loss_coef: float = 0.001  # Switch/Mixtral load-balancing loss weight
    router_z_loss_coef: float = 0.0  # ST-MoE router z-loss weight
    # tokens and init
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    initializer_range: float = 0.02
    # config.json keys we carry through unchanged (generation defaults, chat-related ids...)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"model_type must be one of {SUPPORTED_MODEL_TYPES}, got {self.model_type!r}"
            )
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.is_moe and not 0 < self.num_experts_per_tok <= self.num_local_experts:
            raise ValueError("need 0 < num_experts_per_tok <= num_local_experts")

    @property
    def is_moe(self) -> bool:
        return self.model_type == "mixtral"

    # ---- Hugging Face config.json ----

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> ModelConfig:
        d = dict(d)
        if d.get("hidden_act", "silu") != "silu":
            raise NotImplementedError(f"hidden_act {d['hidden_act']!r} (only silu)")
        for key, ok in _UNSUPPORTED_IF_SET.items():
            if d.get(key, ok) != ok:
                raise NotImplementedError(f"config.json {key}={d[key]!r} is not supported")
        # transformers 5 keeps rope in `rope_parameters`; 4.x used `rope_theta` + `rope_scaling`.
        rope = d.pop("rope_parameters", None) or d.pop("rope_scaling", None) or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type != "default":
            raise NotImplementedError(f"rope_type {rope_type!r} (only default rope)")
        d.setdefault("rope_theta", rope.get("rope_theta", 10000.0))
        d.pop("rope_scaling", None)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in d.items() if k in names}
        dropped = {"architectures", "transformers_version", "hidden_act", "dtype", "torch_dtype"}
        extra = {k: v for k, v in d.items() if k not in names and k not in dropped}
        if d.get("head_dim") is None:
            kwargs.pop("head_dim", None)
        return cls(**kwargs, extra=extra)

    def to_hf_dict(self, dtype: str = "float32") -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra"}
        d.pop("rope_theta")
        # capacity_factor and router_z_loss_coef are ours; transformers keeps unknown keys
        # as plain attributes, so they survive a round trip through its save/load
        if not self.is_moe:
            for k in MOE_KEYS:
                d.pop(k)
            d.pop("sliding_window")
        else:
            d.pop("attention_bias")
            d.pop("mlp_bias")
            if self.attention_bias or self.mlp_bias:
                raise ValueError("transformers' Mixtral has no attention/MLP biases")
        arch = "MixtralForCausalLM" if self.is_moe else "LlamaForCausalLM"
        return {
            **self.extra,
            **d,
            "architectures": [arch],
            "hidden_act": "silu",
            "rope_parameters": {"rope_theta": self.rope_theta, "rope_type": "default"},
            "dtype": dtype,
        }

    @classmethod
    def from_json_file(cls, path: str | Path) -> ModelConfig:
        return cls.from_hf_dict(json.loads(Path(path).read_text()))

    def to_json_file(self, path: str | Path, dtype: str = "float32") -> None:
        Path(path).write_text(json.dumps(self.to_hf_dict(dtype), indent=2, sort_keys=True) + "\n")


# Named starting points for `python -m moe_svc.train --init-config NAME`.
PRESETS: dict[str, ModelConfig] = {
    # trains on CPU in seconds; vocab 256 pairs with the byte-level tokenizer
    "tiny": ModelConfig(
        model_type="mixtral",
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        num_local_experts=4,
        num_experts_per_tok=2,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
    ),
    "tiny-dense": ModelConfig(
        model_type="llama",
        vocab_size=256,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
    ),
}
