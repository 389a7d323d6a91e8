"""Model versions on disk: `<models_dir>/versions/<id>/`, complete or absent.

A version is a model directory that `moe_svc.loader.load_model` serves like the
default one: the parent's files (config, tokenizer, chat template, generation
config) copied, its weights replaced in the parent's tensor names and dtype, and a
`version.json` (`common.contracts.model_versions.ModelVersion`). It is written
under `.<id>.tmp` and renamed into place, so a reader never sees half a version;
an existing id is never written over. The run's checkpoints live in
`.<id>.work` beside it (names that are never version ids) until it is published.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from common.contracts.model_versions import ModelVersion, check_version_id
from moe_svc.modeling.checkpoint import to_per_expert_layout

__all__ = [
    "COPIED_FILES",
    "VersionExistsError",
    "VersionPaths",
    "publish",
    "version_paths",
    "write_weights",
]

VERSIONS_DIR = "versions"
WEIGHTS = "model.safetensors"
# what a version takes from its parent unchanged (those the parent has)
COPIED_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
)
REQUIRED_FILES = ("config.json", WEIGHTS, "tokenizer.json")


class VersionExistsError(FileExistsError):
    """The version id is taken: versions are immutable."""


@dataclass(frozen=True)
class VersionPaths:
    final: Path  # the published version
    staging: Path  # written here, then renamed to `final`
    work: Path  # the run's checkpoints and record


def version_paths(models_dir: Path, version_id: str) -> VersionPaths:
    versions = models_dir / VERSIONS_DIR
    check_version_id(version_id)
    return VersionPaths(
        final=versions / version_id,
        staging=versions / f".{version_id}.tmp",
        work=versions / f".{version_id}.work",
    )


def check_parent(parent: Path, paths: VersionPaths) -> None:
    """Refuse a taken id, and a parent that is not a single-file model directory."""
    if paths.final.exists():
        raise VersionExistsError(
            f"version {paths.final.name!r} exists ({paths.final}): pick a new id"
        )
    missing = [name for name in REQUIRED_FILES if not (parent / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{parent} is not a model directory: no {', '.join(missing)}")


def _parent_tensors(parent: Path) -> tuple[set[str], torch.dtype]:
    with safe_open(str(parent / WEIGHTS), framework="pt") as f:
        names = set(f.keys())
        first = f.get_slice(next(iter(names)))
        dtype = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}[
            first.get_dtype()
        ]
    return names, dtype


def write_weights(state: dict[str, torch.Tensor], parent: Path, out: Path) -> None:
    """Save transformers' Mixtral `state` as `out/model.safetensors`, named as the parent's.

    The default model stores experts one by one (`block_sparse_moe.experts.J.w1`, the
    transformers 4.x names); transformers 5 holds them stacked. The version keeps the
    parent's form and dtype, so every reader of the parent reads it the same way.
    """
    names, dtype = _parent_tensors(parent)
    if any(".block_sparse_moe.experts." in name for name in names):
        state = to_per_expert_layout(state)
    if "lm_head.weight" not in names:
        state.pop("lm_head.weight", None)  # tied to the embeddings
    if state.keys() != names:
        raise ValueError(
            f"tuned weights do not match {parent / WEIGHTS}: missing "
            f"{sorted(names - state.keys())[:4]}, unexpected {sorted(state.keys() - names)[:4]}"
        )
    tensors = {name: t.detach().to(dtype).contiguous() for name, t in state.items()}
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})


def stage(parent: Path, paths: VersionPaths) -> Path:
    """An empty staging directory with the parent's non-weight files copied in."""
    if paths.staging.exists():
        shutil.rmtree(paths.staging)  # a run that died while writing
    paths.staging.mkdir(parents=True)
    for name in COPIED_FILES:
        if (parent / name).is_file():
            # copyfile, not copy2: the loader reports config.json's mtime as the model's age
            shutil.copyfile(parent / name, paths.staging / name)
    return paths.staging


def publish(paths: VersionPaths, record: ModelVersion) -> Path:
    """Write `version.json` into the staged directory and rename it into place."""
    (paths.staging / "version.json").write_text(record.model_dump_json(indent=2) + "\n")
    if paths.final.exists():
        raise VersionExistsError(f"version {paths.final.name!r} appeared while training")
    os.rename(paths.staging, paths.final)
    shutil.rmtree(paths.work, ignore_errors=True)
    return paths.final
