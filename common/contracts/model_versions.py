"""A tuned model version's record, `version.json` beside its weights.

`python -m moe_svc.preference` writes `<models_dir>/versions/<id>/` with it; whatever
serves or rolls out versions reads it with `ModelVersion.model_validate_json`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "VERSION_ID_PATTERN",
    "ModelVersion",
    "VersionData",
    "VersionServing",
    "VersionTraining",
    "check_version_id",
]

# lower case, starts with a letter or digit, at most 63 characters: a directory name,
# a URL path segment and a metrics label alike
VERSION_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"


def check_version_id(version_id: str) -> str:
    """Return `version_id`, or raise ValueError saying what a version id may be."""
    if not re.fullmatch(VERSION_ID_PATTERN, version_id):
        raise ValueError(
            f"invalid version id {version_id!r}: 1 to 63 characters of a-z, 0-9, '.', '_' "
            "and '-', starting with a letter or digit"
        )
    return version_id


class VersionData(BaseModel):
    """The training set, as it was read."""

    path: str
    sha256: str
    examples: int


class VersionTraining(BaseModel):
    steps: int
    loss_first: float | None
    loss_last: float | None
    seconds: float
    steps_per_second: float | None = None
    peak_rss_mb: float | None = None
    # the run's arguments: method hyperparameters, LoRA rank, threads, seed
    settings: dict[str, Any] = Field(default_factory=dict)


class VersionServing(BaseModel):
    """How moe_svc's loader will serve the weights."""

    # MoE layers whose experts are a shared FFN plus low-rank deltas (the fast layout)
    shared_base_layers: int
    layers: int


class ModelVersion(BaseModel):
    id: str = Field(pattern=VERSION_ID_PATTERN)
    # the model directory or version it was tuned from (its directory name)
    parent: str
    created: int  # Unix seconds
    method: Literal["kto", "dpo"]
    data: VersionData
    training: VersionTraining
    serving: VersionServing | None = None
