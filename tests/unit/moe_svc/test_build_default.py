"""Sparse upcycling: the upcycled Mixtral computes what the dense Llama computes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, MixtralForCausalLM

from moe_svc.build_default import NUM_EXPERTS, apply_artefact, dense_config, moe_config, upcycle


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config)
    model.eval()
    return model


def to_mixtral(
    dense: LlamaForCausalLM, directory: Path
) -> tuple[MixtralForCausalLM, dict[str, torch.Tensor]]:
    """Upcycle, write a HF directory as the build does, and load it with transformers."""
    llama = dense.config.to_dict()
    state = {k: v.clone() for k, v in dense.state_dict().items() if k != "lm_head.weight"}
    tensors = upcycle(state, llama["num_hidden_layers"], llama["hidden_size"])
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(moe_config(llama)))
    save_file(tensors, str(directory / "model.safetensors"), {"format": "pt"})
    model = MixtralForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    return model, tensors


def test_upcycled_model_computes_the_dense_model(tmp_path: Path) -> None:
    dense = tiny_llama()
    moe, tensors = to_mixtral(dense, tmp_path / "moe")
    ids = torch.randint(0, 97, (2, 13))

    with torch.no_grad():
        expected = dense(ids).logits
        got = moe(ids).logits
    assert torch.allclose(expected, got, atol=1e-5)
    # Every expert starts as a copy of the dense FFN; routers are seeded and non-trivial.
    w1 = tensors["model.layers.1.block_sparse_moe.experts.5.w1.weight"]
    assert torch.equal(w1, dense.state_dict()["model.layers.1.mlp.gate_proj.weight"])
    assert tensors["model.layers.0.block_sparse_moe.gate.weight"].shape == (NUM_EXPERTS, 48)
    assert tensors["model.layers.0.block_sparse_moe.gate.weight"].abs().sum() > 0


def test_upcycling_is_deterministic() -> None:
    dense = tiny_llama().state_dict()
    a = upcycle(dict(dense), 2, 48)
    b = upcycle(dict(dense), 2, 48)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_configs_name_the_architectures() -> None:
    llama = tiny_llama().config.to_dict()
    assert dense_config(llama)["model_type"] == "llama"
    config = moe_config(llama)
    assert (config["model_type"], config["num_local_experts"], config["num_experts_per_tok"]) == (
        "mixtral",
        8,
        2,
    )
    assert config["rope_theta"] == 100000.0


def test_artefact_adds_low_rank_deltas_and_routers(tmp_path: Path) -> None:
    dense = tiny_llama().state_dict()
    tensors = upcycle(dict(dense), 2, 48)
    before = tensors["model.layers.1.block_sparse_moe.experts.3.w2.weight"].clone()
    lora_a, lora_b = torch.randn(4, 64), torch.randn(48, 4)
    router = torch.randn(NUM_EXPERTS, 48)
    artefact = tmp_path / "expert_specialisation.safetensors"
    save_file(
        {
            "layers.1.experts.3.w2.lora_a": lora_a,
            "layers.1.experts.3.w2.lora_b": lora_b,
            "layers.0.router.weight": router,
        },
        str(artefact),
    )

    assert apply_artefact(tensors, artefact) == 2
    after = tensors["model.layers.1.block_sparse_moe.experts.3.w2.weight"]
    assert torch.allclose(after, before + lora_b @ lora_a)
    assert torch.equal(tensors["model.layers.0.block_sparse_moe.gate.weight"], router)
    # Other experts are untouched.
    assert torch.equal(
        tensors["model.layers.1.block_sparse_moe.experts.2.w2.weight"],
        dense["model.layers.1.mlp.down_proj.weight"],
    )
