"""A tuned model version's record, `version.json` beside its weights.

`python -m moe_svc.preference` writes `<models_dir>/versions/<id>/` with it; whatever
serves or rolls out versions reads it with `ModelVersion.model_validate_json`.

moe_svc's answers about the versions it serves, which the gateway's rollout reads:

- `GET /v1/versions`: `ServedVersions` (what is on disk, loaded, current);
- `POST /v1/versions/{id}/load`, `DELETE /v1/versions/{id}`: load a candidate beside the
  current model / stop serving it; `POST /v1/versions/{id}/promote`: make it current
  (its eval gate passed); `POST /v1/versions/rollback`: the model current before the
  last promotion is current again. Each answers `ServedVersions`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from common.request_context import MODEL_VERSION_PATTERN, valid_model_version

__all__ = [
    "VERSION_ID_PATTERN",
    "ModelVersion",
    "ServedVersion",
    "ServedVersions",
    "VersionData",
    "VersionServing",
    "VersionTraining",
    "check_version_id",
]

# lower case, starts with a letter or digit, at most 63 characters: a directory name,
# a URL path segment, a header value and a metrics label alike
VERSION_ID_PATTERN = MODEL_VERSION_PATTERN


def check_version_id(version_id: str) -> str:
    """Return `version_id`, or raise ValueError saying what a version id may be."""
    if not valid_model_version(version_id):
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
    # `python -m bench.gate`'s verdict against the parent (`passed`, `failed`, figures):
    # moe_svc promotes a version only when it passed
    gate: dict[str, Any] | None = None


class ServedVersion(BaseModel):
    id: str
    parent: str | None = Field(None, description="The model or version it was tuned from.")
    created: int | None = Field(None, description="Unix time it was written.")
    method: str | None = Field(None, description="How it was tuned (kto, dpo, ...).")
    loaded: bool = Field(description="Served by moe_svc now (current or candidate).")
    current: bool
    gate: dict[str, Any] | None = Field(
        None, description="The eval gate's verdict (`passed`, figures), when it ran."
    )


class ServedVersions(BaseModel):
    model: str = Field(description="The public model id every version answers under.")
    current: str | None = Field(description="The current version; null: the base model.")
    history: list[str | None] = Field(
        description="Versions current before, oldest first (null: the base model)."
    )
    candidates: list[str] = Field(description="Versions loaded beside the current one.")
    versions: list[ServedVersion]
