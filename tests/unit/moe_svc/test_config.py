"""config.json in both transformers generations maps onto ModelConfig and back."""

from __future__ import annotations

import pytest

from moe_svc.modeling import ModelConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_reads_transformers_4_and_5_rope_fields() -> None:
    v4 = {"model_type": "llama", "rope_theta": 500.0, "rope_scaling": None, "hidden_size": 64,
          "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    v5 = {"model_type": "llama", "rope_parameters": {"rope_theta": 500.0, "rope_type": "default"},
          "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    assert ModelConfig.from_hf_dict(v4) == ModelConfig.from_hf_dict(v5)
    assert ModelConfig.from_hf_dict(v4).rope_theta == 500.0
    assert ModelConfig.from_hf_dict(v4).head_dim == 16


def test_round_trip_keeps_our_fields_and_unknown_keys() -> None:
    config = ModelConfig(capacity_factor=1.25, router_z_loss_coef=1e-3, extra={"use_cache": True})
    data = config.to_hf_dict()
    assert data["architectures"] == ["MixtralForCausalLM"]
    again = ModelConfig.from_hf_dict(data)
    assert again == config and again.extra["use_cache"] is True


@pytest.mark.parametrize(
    ("key", "value"),
    [("rope_parameters", {"rope_type": "llama3", "rope_theta": 1.0}), ("hidden_act", "gelu"),
     ("pretraining_tp", 2), ("model_type", "gpt2")],
)  # fmt: skip
def test_refuses_what_it_would_compute_differently(key: str, value: object) -> None:
    with pytest.raises((NotImplementedError, ValueError)):
        ModelConfig.from_hf_dict({"model_type": "llama", key: value})
