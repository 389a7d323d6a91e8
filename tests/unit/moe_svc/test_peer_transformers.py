"""Our logits equal transformers' Llama/Mixtral logits on the same weights (fp32).

Weights travel through Hugging Face directories in both directions: transformers
saves and we load; we save and transformers loads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, LlamaForCausalLM, MixtralForCausalLM

from moe_svc.modeling import CausalLM, load_pretrained, save_pretrained

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ATOL = 1e-4

CONFIGS: list[tuple[str, dict[str, Any], int]] = [
    # (model_type, config overrides, sequence length)
    ("mixtral", {"num_local_experts": 4, "num_experts_per_tok": 1, "num_key_value_heads": 6}, 7),
    ("mixtral", {"num_local_experts": 8, "num_experts_per_tok": 2, "num_key_value_heads": 2}, 13),
    (
        "mixtral",
        {"num_local_experts": 4, "num_experts_per_tok": 2, "tie_word_embeddings": True},
        11,
    ),
    (
        "mixtral",
        {"num_local_experts": 8, "num_experts_per_tok": 1, "num_key_value_heads": 2},
        5,
    ),
    ("mixtral", {"num_local_experts": 4, "sliding_window": 4}, 10),
    ("llama", {"num_key_value_heads": 6}, 9),
    ("llama", {"num_key_value_heads": 2, "tie_word_embeddings": True}, 15),
]
IDS = [f"{t}-{i}" for i, (t, _, _) in enumerate(CONFIGS)]

HFModel = LlamaForCausalLM | MixtralForCausalLM  # what the make_hf_model fixture builds


def _hf_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits: torch.Tensor = model(ids).logits
    return logits


def _our_logits(model: CausalLM, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        logits: torch.Tensor = model(ids)
    return logits


@pytest.mark.parametrize(("model_type", "overrides", "seq_len"), CONFIGS, ids=IDS)
def test_load_transformers_directory(
    make_hf_model: Callable[..., HFModel],
    tmp_path: Path,
    model_type: str,
    overrides: dict[str, Any],
    seq_len: int,
) -> None:
    hf = make_hf_model(model_type, **overrides)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_pretrained(tmp_path / "hf")
    ids = torch.randint(0, hf.config.vocab_size, (3, seq_len))
    expected = _hf_logits(hf, ids)
    got = _our_logits(ours, ids)
    assert got.shape == (3, seq_len, hf.config.vocab_size)
    assert expected.std() > 0.1  # logits carry signal, so a wrong model cannot pass by luck
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    if overrides.get("tie_word_embeddings"):
        assert ours.lm_head.weight is ours.model.embed_tokens.weight


SAVE_CASES = [
    (*CONFIGS[1], "stacked"),
    (*CONFIGS[1], "per_expert"),
    (*CONFIGS[2], "stacked"),
    (*CONFIGS[3], "per_expert"),
    (*CONFIGS[5], "stacked"),
    (*CONFIGS[6], "stacked"),
]


@pytest.mark.parametrize(
    ("model_type", "overrides", "seq_len", "expert_layout"),
    SAVE_CASES,
    ids=[f"{c[0]}-{i}-{c[3]}" for i, c in enumerate(SAVE_CASES)],
)
def test_transformers_loads_our_directory(
    make_hf_model: Callable[..., HFModel],
    tmp_path: Path,
    model_type: str,
    overrides: dict[str, Any],
    seq_len: int,
    expert_layout: Literal["stacked", "per_expert"],
) -> None:
    hf = make_hf_model(model_type, **overrides)
    hf.save_pretrained(tmp_path / "hf")
    ours = load_pretrained(tmp_path / "hf")
    save_pretrained(ours, tmp_path / "ours", expert_layout=expert_layout)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert type(reloaded) is type(hf)
    ids = torch.randint(0, hf.config.vocab_size, (2, seq_len))
    torch.testing.assert_close(_hf_logits(reloaded, ids), _hf_logits(hf, ids), atol=ATOL, rtol=0)
    # and our own loader reads what we wrote
    torch.testing.assert_close(
        _our_logits(load_pretrained(tmp_path / "ours"), ids), _hf_logits(hf, ids), atol=ATOL, rtol=0
    )


def test_load_transformers_4x_per_expert_layout(
    make_hf_model: Callable[..., HFModel], tmp_path: Path
) -> None:
    """A 4.x checkpoint names each expert's w1 (gate), w3 (up), w2 (down) under block_sparse_moe."""
    hf = make_hf_model("mixtral", num_local_experts=4, num_experts_per_tok=2)
    hf.save_pretrained(tmp_path / "v5")
    state = load_file(tmp_path / "v5" / "model.safetensors")
    old: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith("mlp.experts.gate_up_proj"):
            prefix = name.replace("mlp.experts.gate_up_proj", "block_sparse_moe.experts")
            inner = tensor.shape[1] // 2
            for e in range(tensor.shape[0]):
                old[f"{prefix}.{e}.w1.weight"] = tensor[e, :inner].clone()
                old[f"{prefix}.{e}.w3.weight"] = tensor[e, inner:].clone()
        elif name.endswith("mlp.experts.down_proj"):
            prefix = name.replace("mlp.experts.down_proj", "block_sparse_moe.experts")
            for e in range(tensor.shape[0]):
                old[f"{prefix}.{e}.w2.weight"] = tensor[e].clone()
        else:
            old[name.replace("mlp.gate.", "block_sparse_moe.gate.")] = tensor
    v4 = tmp_path / "v4"
    v4.mkdir()
    (v4 / "config.json").write_text((tmp_path / "v5" / "config.json").read_text())
    save_file(old, v4 / "model.safetensors", metadata={"format": "pt"})
    assert not any(".mlp." in name for name in old if "experts" in name)

    ids = torch.randint(0, hf.config.vocab_size, (2, 9))
    torch.testing.assert_close(
        _our_logits(load_pretrained(v4), ids), _hf_logits(hf, ids), atol=ATOL, rtol=0
    )


def test_load_sharded_checkpoint(make_hf_model: Callable[..., HFModel], tmp_path: Path) -> None:
    hf = make_hf_model("mixtral", num_local_experts=4)
    hf.save_pretrained(tmp_path / "hf", max_shard_size="50KB")
    index = json.loads((tmp_path / "hf" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    ids = torch.randint(0, hf.config.vocab_size, (1, 6))
    torch.testing.assert_close(
        _our_logits(load_pretrained(tmp_path / "hf"), ids), _hf_logits(hf, ids), atol=ATOL, rtol=0
    )


def test_load_in_bfloat16(hf_dir: Callable[..., Path]) -> None:
    path = hf_dir("mixtral")
    full = load_pretrained(path)
    half = load_pretrained(path, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    ids = torch.randint(0, 101, (2, 8))
    got = _our_logits(half, ids)
    assert got.dtype == torch.bfloat16
    # bf16 keeps about 3 significant digits; the argmax is what generation uses
    agree = (got.argmax(-1) == _our_logits(full, ids).argmax(-1)).float().mean()
    assert agree > 0.9


def test_checkpoint_that_does_not_match_config_is_refused(hf_dir: Callable[..., Path]) -> None:
    path = hf_dir("mixtral")
    config = json.loads((path / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="missing"):
        load_pretrained(path)
