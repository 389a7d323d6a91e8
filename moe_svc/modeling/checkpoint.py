"""Load and save Hugging Face model directories (config.json + safetensors).

Reads single-file and sharded (`model.safetensors.index.json`) checkpoints of
model_type `llama` and `mixtral`, the latter in both expert layouts:

- transformers 5.x: `model.layers.N.mlp.experts.gate_up_proj` (E, 2I, C) and
  `...experts.down_proj` (E, C, I), router `model.layers.N.mlp.gate.weight`;
- transformers 4.x: `model.layers.N.block_sparse_moe.experts.J.w1/w3/w2.weight`
  (gate (I, C), up (I, C), down (C, I)), router `...block_sparse_moe.gate.weight`.

`save_pretrained` writes the 5.x layout by default, which the installed
transformers loads directly; `expert_layout="per_expert"` writes the 4.x layout,
which both major versions load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from moe_svc.modeling.config import ModelConfig
from moe_svc.modeling.model import CausalLM

__all__ = ["load_pretrained", "save_pretrained", "to_per_expert_layout"]

_PER_EXPERT = re.compile(
    r"^(model\.layers\.\d+)\.(?:block_sparse_moe|mlp)\.experts\.(\d+)\.(w1|w2|w3)\.weight$"
)


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        return [path / name for name in sorted(set(weight_map.values()))]
    single = path / "model.safetensors"
    if single.exists():
        return [single]
    found = sorted(path.glob("*.safetensors"))
    if not found:
        raise FileNotFoundError(f"no safetensors weights in {path}")
    return found


def _iter_tensors(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    for file in _weight_files(path):
        with safe_open(str(file), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                yield name, f.get_tensor(name)


def _normalise_state_dict(
    tensors: Iterator[tuple[str, torch.Tensor]], config: ModelConfig, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Our parameter names, with 4.x per-expert tensors stacked into the 5.x layout."""
    state: dict[str, torch.Tensor] = {}
    per_expert: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    for name, tensor in tensors:
        match = _PER_EXPERT.match(name)
        if match:
            layer, expert, which = match.groups()
            per_expert.setdefault((layer, which), {})[int(expert)] = tensor
            continue
        if name.endswith("rotary_emb.inv_freq"):  # buffer that old checkpoints sometimes saved
            continue
        state[name.replace(".block_sparse_moe.", ".mlp.")] = tensor.to(dtype)
    layers = sorted({layer for layer, _ in per_expert})
    E = config.num_local_experts
    for layer in layers:
        parts = {w: per_expert.get((layer, w), {}) for w in ("w1", "w2", "w3")}
        for w, got in parts.items():
            if sorted(got) != list(range(E)):
                raise ValueError(f"{layer}: expected {E} experts of {w}, found {sorted(got)}")
        gate_up = [torch.cat([parts["w1"][e], parts["w3"][e]]) for e in range(E)]  # (2I, C)
        state[f"{layer}.mlp.experts.gate_up_proj"] = torch.stack(gate_up).to(dtype)
        state[f"{layer}.mlp.experts.down_proj"] = torch.stack(
            [parts["w2"][e] for e in range(E)]
        ).to(dtype)
    return state


def load_pretrained(
    path: str | Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> CausalLM:
    """Build a CausalLM from a Hugging Face model directory.

    dtype defaults to float32, the fastest matmul type on CPUs without AMX; the
    router softmax and norms still upcast internally whatever the dtype.
    """
    path = Path(path)
    config = ModelConfig.from_json_file(path / "config.json")
    # build on the meta device: random init of a large model would cost seconds for nothing
    with torch.device("meta"):
        model = CausalLM(config)
    state = _normalise_state_dict(_iter_tensors(path), config, dtype)
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # same tensor as the embeddings
    expected = {
        k for k in model.state_dict() if not (config.tie_word_embeddings and k == "lm_head.weight")
    }
    missing, unexpected = expected - state.keys(), state.keys() - expected
    if missing or unexpected:
        raise ValueError(
            f"checkpoint in {path} does not match the config: "
            f"missing {sorted(missing)[:8]}, unexpected {sorted(unexpected)[:8]}"
        )
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    rotary = model.model.rotary_emb
    rotary.inv_freq = rotary.compute_inv_freq()
    return model.to(device).eval()


def to_per_expert_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rewrite stacked expert tensors into the transformers 4.x `block_sparse_moe` names."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        if name.endswith(".mlp.experts.gate_up_proj"):
            prefix = name.removesuffix(".mlp.experts.gate_up_proj") + ".block_sparse_moe.experts"
            gate, up = tensor.chunk(2, dim=1)  # (E, I, C) each
            for e in range(tensor.shape[0]):
                out[f"{prefix}.{e}.w1.weight"] = gate[e].contiguous()
                out[f"{prefix}.{e}.w3.weight"] = up[e].contiguous()
        elif name.endswith(".mlp.experts.down_proj"):
            prefix = name.removesuffix(".mlp.experts.down_proj") + ".block_sparse_moe.experts"
            for e in range(tensor.shape[0]):
                out[f"{prefix}.{e}.w2.weight"] = tensor[e].contiguous()
        elif ".mlp.gate." in name:
            out[name.replace(".mlp.gate.", ".block_sparse_moe.gate.")] = tensor
        else:
            out[name] = tensor
    return out


def save_pretrained(
    model: CausalLM,
    path: str | Path,
    *,
    expert_layout: Literal["stacked", "per_expert"] = "stacked",
) -> None:
    """Write config.json and model.safetensors that transformers loads as Llama/Mixtral."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight")  # transformers re-ties it from the embeddings
    if expert_layout == "per_expert":
        state = to_per_expert_layout(state)
    dtype = str(next(iter(state.values())).dtype).removeprefix("torch.")
    model.config.to_json_file(path / "config.json", dtype=dtype)
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
