"""GGUF export: llama.cpp's tensor names, stacked experts, rotary order, metadata, tokenizer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch

from moe_svc.export_gguf import export, gguf_path, main, permute_rotary
from moe_svc.modeling import PRESETS, CausalLM, save_pretrained

Rope = Callable[[torch.Tensor, int, float], torch.Tensor]
TOKENS = [f"t{i}" for i in range(256)]


@pytest.fixture
def tokenizer_gguf(tmp_path: Path) -> Path:
    """A GGUF that carries only tokenizer keys, as the SmolLM2 file does (256 tokens)."""
    path = tmp_path / "tokenizer.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(TOKENS)
    writer.add_token_types([gguf.TokenType.NORMAL] * len(TOKENS))
    writer.add_token_merges(["t 1", "t 2"])
    writer.add_eos_token_id(2)
    writer.add_chat_template("{{ messages }}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _model_dir(tmp_path: Path, layout: str, preset: str = "tiny") -> tuple[Path, CausalLM]:
    torch.manual_seed(0)
    model = CausalLM(dataclasses.replace(PRESETS[preset]))
    directory = tmp_path / f"{preset}-{layout}"
    save_pretrained(model, directory, expert_layout=layout)  # type: ignore[arg-type]
    return directory, model


def _tensors(path: Path) -> dict[str, tuple[gguf.GGMLQuantizationType, np.ndarray]]:
    reader = gguf.GGUFReader(path)
    return {
        t.name: (t.tensor_type, gguf.quants.dequantize(t.data, t.tensor_type))
        for t in reader.tensors
    }


@pytest.mark.parametrize("layout", ["per_expert", "stacked"])
def test_experts_are_stacked_under_llama_cpp_names(
    tmp_path: Path, tokenizer_gguf: Path, layout: str
) -> None:
    directory, model = _model_dir(tmp_path, layout)
    out = export(directory, tmp_path / "out.gguf", "f16", tokenizer_gguf)
    tensors = _tensors(out)
    config = model.config
    expected = {"token_embd.weight", "output_norm.weight"}
    for i in range(config.num_hidden_layers):
        expected |= {
            f"blk.{i}.{n}.weight"
            for n in (
                "attn_norm",
                "ffn_norm",
                "attn_q",
                "attn_k",
                "attn_v",
                "attn_output",
                "ffn_gate_inp",
                "ffn_gate_exps",
                "ffn_up_exps",
                "ffn_down_exps",
            )
        }
    assert set(tensors) == expected  # tied output: llama.cpp reuses token_embd
    state = model.state_dict()
    gate, up = state["model.layers.1.mlp.experts.gate_up_proj"].chunk(2, dim=1)  # (E, I, C)
    down = state["model.layers.1.mlp.experts.down_proj"]  # (E, C, I)
    for name, want in (("ffn_gate_exps", gate), ("ffn_up_exps", up), ("ffn_down_exps", down)):
        qtype, got = tensors[f"blk.1.{name}.weight"]
        assert qtype == gguf.GGMLQuantizationType.F16
        np.testing.assert_array_equal(got, want.numpy().astype(np.float16).astype(np.float32))
    # routers and norms stay f32: a rounded router can flip a top-k choice
    qtype, router = tensors["blk.1.ffn_gate_inp.weight"]
    assert qtype == gguf.GGMLQuantizationType.F32
    np.testing.assert_array_equal(router, state["model.layers.1.mlp.gate.weight"].numpy())
    assert tensors["blk.0.attn_norm.weight"][0] == gguf.GGMLQuantizationType.F32


def test_metadata_and_tokenizer_are_what_llama_cpp_reads(
    tmp_path: Path, tokenizer_gguf: Path
) -> None:
    directory, model = _model_dir(tmp_path, "per_expert")
    reader = gguf.GGUFReader(export(directory, tmp_path / "out.gguf", "f16", tokenizer_gguf))
    fields = {key: field.contents() for key, field in reader.fields.items()}
    config = model.config
    assert fields["general.architecture"] == "llama"
    assert fields["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16
    assert fields["llama.expert_count"] == config.num_local_experts
    assert fields["llama.expert_used_count"] == config.num_experts_per_tok
    assert fields["llama.block_count"] == config.num_hidden_layers
    assert fields["llama.attention.head_count_kv"] == config.num_key_value_heads
    assert fields["llama.rope.dimension_count"] == config.head_dim
    assert fields["llama.rope.freq_base"] == pytest.approx(config.rope_theta)
    assert fields["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(config.rms_norm_eps)
    assert fields["tokenizer.ggml.tokens"] == TOKENS
    assert fields["tokenizer.ggml.pre"] == "smollm"
    assert fields["tokenizer.ggml.merges"] == ["t 1", "t 2"]
    assert fields["tokenizer.chat_template"] == "{{ messages }}"


def _angles(pos: int, theta: float, d: int) -> torch.Tensor:
    return pos * torch.pow(theta, -torch.arange(0, d, 2, dtype=torch.float64) / d)


def _rope_halves(x: torch.Tensor, pos: int, theta: float) -> torch.Tensor:
    """transformers' rotary embedding: dimension i turns with i + d/2 (rotate_half)."""
    d = x.shape[-1]
    angle = _angles(pos, theta, d)
    cos, sin = torch.cat([angle.cos()] * 2), torch.cat([angle.sin()] * 2)
    return x * cos + torch.cat([-x[..., d // 2 :], x[..., : d // 2]], dim=-1) * sin


def _rope_pairs(x: torch.Tensor, pos: int, theta: float) -> torch.Tensor:
    """llama.cpp's rotary embedding for the llama architecture: dimensions 2i, 2i+1 turn."""
    angle = _angles(pos, theta, x.shape[-1])
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack(
        [even * angle.cos() - odd * angle.sin(), even * angle.sin() + odd * angle.cos()], dim=-1
    ).flatten(-2)


def test_permuted_q_and_k_give_the_same_attention_scores_under_llama_cpp_rope() -> None:
    torch.manual_seed(0)
    n_head, n_kv, head_dim, width, theta = 4, 2, 16, 32, 10000.0
    wq = torch.randn(n_head * head_dim, width, dtype=torch.float64)
    wk = torch.randn(n_kv * head_dim, width, dtype=torch.float64)
    x_q, x_k = torch.randn(width, dtype=torch.float64), torch.randn(width, dtype=torch.float64)

    def scores(q_w: torch.Tensor, k_w: torch.Tensor, rope: Rope) -> torch.Tensor:
        q = rope((q_w @ x_q).view(n_head, head_dim), 7, theta)
        k = rope((k_w @ x_k).view(n_kv, head_dim), 3, theta)
        return (q.view(n_kv, n_head // n_kv, head_dim) * k[:, None]).sum(-1)

    want = scores(wq, wk, _rope_halves)
    got = scores(permute_rotary(wq, n_head), permute_rotary(wk, n_kv), _rope_pairs)
    torch.testing.assert_close(got, want)
    # without the permutation the scores are wrong: the test can fail
    assert not torch.allclose(scores(wq, wk, _rope_pairs), want)


def test_q8_0_export_quantises_matrices_within_a_block_step(
    tmp_path: Path, tokenizer_gguf: Path
) -> None:
    directory, model = _model_dir(tmp_path, "per_expert")
    tensors = _tensors(export(directory, tmp_path / "out.gguf", "q8_0", tokenizer_gguf))
    qtype, got = tensors["blk.0.attn_v.weight"]
    assert qtype == gguf.GGMLQuantizationType.Q8_0
    want = model.state_dict()["model.layers.0.self_attn.v_proj.weight"].numpy()
    # Q8_0: 32 values share one scale, max|block| / 127, stored as f16: rounding to the
    # step is half a step, the f16 scale adds up to 127 * 2^-11 of a step
    step = np.abs(want.reshape(-1, 32)).max(axis=1, keepdims=True) / 127
    assert (np.abs(got.reshape(-1, 32) - want.reshape(-1, 32)) <= step * 0.57).all()
    assert tensors["blk.0.ffn_gate_inp.weight"][0] == gguf.GGMLQuantizationType.F32


def test_missing_model_says_how_to_build_it_and_leaves_no_file(
    tmp_path: Path, tokenizer_gguf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--model-dir", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]
    assert main([*args, "--tokenizer-gguf", str(tokenizer_gguf)]) == 1
    assert "python -m moe_svc.build_default" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_cli_writes_both_types_atomically(tmp_path: Path, tokenizer_gguf: Path) -> None:
    directory, _ = _model_dir(tmp_path, "per_expert")
    out = tmp_path / "out"
    argv = ["--model-dir", str(directory), "--out", str(out), "--tokenizer-gguf"]
    assert main([*argv, str(tokenizer_gguf)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == [gguf_path(out, directory.name, t).name for t in ("f16", "q8_0")]
