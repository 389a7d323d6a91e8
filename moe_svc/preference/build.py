"""A new model version from a feedback export: check, train (resumably), merge, publish."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from transformers import MixtralForCausalLM

from common.contracts.model_versions import (
    ModelVersion,
    VersionData,
    VersionServing,
    VersionTraining,
)
from moe_svc.kernels.shared_experts import MAX_RANK, shared_base_factors
from moe_svc.preference.data import read_examples
from moe_svc.preference.tuning import TuneSettings, load_policy, train
from moe_svc.preference.versions import (
    check_parent,
    publish,
    stage,
    version_paths,
    write_weights,
)

__all__ = ["RunMismatchError", "build_version", "shared_base_layers"]

logger = logging.getLogger("moe_svc.preference")


class RunMismatchError(ValueError):
    """The work directory holds checkpoints of a run with other data or settings."""


def shared_base_layers(model: MixtralForCausalLM) -> int:
    """MoE layers whose experts moe_svc's loader will serve as a shared FFN plus deltas."""
    count = 0
    for layer in model.model.layers:
        experts = layer.mlp.experts
        found = shared_base_factors(
            experts.gate_up_proj.detach(), experts.down_proj.detach(), MAX_RANK
        )
        count += found is not None
    return count


def _check_run_record(work: Path, record: dict[str, Any], fresh: bool) -> None:
    """Resume only the run these arguments describe; `fresh` discards any other."""
    path = work / "run.json"
    if fresh and work.exists():
        shutil.rmtree(work)
    if path.exists():
        before = json.loads(path.read_text())
        if before != record:
            changed = sorted(
                k for k in record.keys() | before.keys() if before.get(k) != record.get(k)
            )
            raise RunMismatchError(
                f"{work} holds a run with other {', '.join(changed)} "
                f"({before} != {record}); rerun with its arguments to resume, "
                "or with --fresh to start over"
            )
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def build_version(
    *,
    version_id: str,
    parent: Path,
    models_dir: Path,
    data_path: Path,
    settings: TuneSettings,
    threads: int | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> Path:
    """Tune `parent` on `data_path` into `<models_dir>/versions/<version_id>/`; its path."""
    paths = version_paths(models_dir, version_id)
    check_parent(parent, paths)
    if parent.resolve() == paths.final.resolve():
        raise ValueError("a version cannot be its own parent")
    data = read_examples(data_path, settings.method)
    record: dict[str, Any] = {
        "parent": str(parent.resolve()),
        "data_sha256": data.sha256,
        "settings": settings.fingerprint(),
    }
    _check_run_record(paths.work, record, fresh)
    if threads is not None:
        torch.set_num_threads(threads)
    logger.info(
        "tuning",
        extra={"version": version_id, "parent": str(parent), "examples": len(data.examples)},
    )
    model, tokenizer = load_policy(parent)
    layers = model.config.num_hidden_layers
    shared_before = shared_base_layers(model)
    result = train(model, tokenizer, data, settings, paths.work, progress)
    shared_after = shared_base_layers(result.model)
    if shared_after < shared_before:
        raise ValueError(
            f"the tuned experts leave the shared-base layout in {shared_before - shared_after} "
            f"of {layers} layers (deltas over rank {MAX_RANK}): lower --rank"
        )
    staging = stage(parent, paths)
    write_weights(result.model.state_dict(), parent, staging)
    version = ModelVersion(
        id=version_id,
        parent=parent.name,
        created=int(time.time()),
        method=settings.method,
        data=VersionData(path=str(data_path), sha256=data.sha256, examples=len(data.examples)),
        training=VersionTraining(
            steps=result.steps,
            loss_first=result.loss_first,
            loss_last=result.loss_last,
            seconds=result.seconds,
            steps_per_second=result.steps_per_second,
            peak_rss_mb=result.peak_rss_mb,
            settings={**record["settings"], "steps": settings.steps, "threads": threads},
        ),
        serving=VersionServing(shared_base_layers=shared_after, layers=layers),
    )
    final = publish(paths, version)
    logger.info(
        "version published",
        extra={"path": str(final), "steps": result.steps, "loss_last": result.loss_last},
    )
    return final
