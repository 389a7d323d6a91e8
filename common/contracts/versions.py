"""moe_svc's model versions, as moe_svc answers them and the gateway's rollout reads them.

- `GET /v1/versions`: `ServedVersions` (what is on disk, loaded, current).
- `POST /v1/versions/{id}/load`, `DELETE /v1/versions/{id}`: load a candidate beside the
  current model / stop serving it; `POST /v1/versions/{id}/promote`: make it current
  (its eval gate passed); `POST /v1/versions/rollback`: the model current before the
  last promotion is current again. Each answers `ServedVersions`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = ["ServedVersion", "ServedVersions"]


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
