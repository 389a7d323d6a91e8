"""Shared fixtures: tiny random transformers models, saved as Hugging Face directories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MixtralConfig, MixtralForCausalLM
from transformers import logging as hf_logging

HFModel = LlamaForCausalLM | MixtralForCausalLM

hf_logging.set_verbosity_error()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models are dispatch-bound: a second OpenMP thread buys nothing, and on a
    busy 2-core machine its barrier waits made these tests 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _hf_model(model_type: str, **overrides: Any) -> HFModel:
    """A random transformers model of that type, small enough for a unit test."""
    base: dict[str, Any] = {
        "vocab_size": 101,
        "hidden_size": 48,
        "intermediate_size": 40,
        "num_hidden_layers": 2,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "rope_theta": 5000.0,
        "rms_norm_eps": 1e-5,
        # larger than the 0.02 default, so logits differ clearly between wrong and right
        "initializer_range": 0.1,
    }
    base.update(overrides)
    if model_type == "llama":
        return LlamaForCausalLM(LlamaConfig(**base))
    base.setdefault("num_local_experts", 4)
    base.setdefault("num_experts_per_tok", 2)
    return MixtralForCausalLM(MixtralConfig(**base))


@pytest.fixture
def make_hf_model() -> Callable[..., HFModel]:
    """Build a random transformers Llama/Mixtral model in eval mode (fp32)."""

    def make(model_type: str = "mixtral", seed: int = 0, **overrides: Any) -> HFModel:
        torch.manual_seed(seed)
        model = _hf_model(model_type, **overrides)
        if isinstance(model, MixtralForCausalLM):
            # decisive routing: with the default init all router logits are near zero and
            # the choice of experts would hardly matter to the logits being compared
            for layer in model.model.layers:
                torch.nn.init.normal_(layer.mlp.gate.weight, std=1.0)
        model.train(False)  # eval mode; transformers' own `eval` is not annotated
        return model

    return make


@pytest.fixture
def hf_dir(tmp_path: Path, make_hf_model: Callable[..., HFModel]) -> Callable[..., Path]:
    """Save a random transformers model to a fresh directory and return its path."""

    def make(model_type: str = "mixtral", **overrides: Any) -> Path:
        path = tmp_path / f"hf_{model_type}_{len(list(tmp_path.iterdir()))}"
        make_hf_model(model_type, **overrides).save_pretrained(path)
        return path

    return make
