"""Model versions: tuned core models next to the current one, and which one serves.

A version is a complete model directory under `<data_dir>/models/versions/<id>/`
(what the preference tuning writes: the model files plus `version.json`, which
names the model it was tuned from, how, and later the eval gate's verdict).
moe_svc serves its base model (the default build, or `MOE_MODEL_DIR`) and the
versions loaded next to it. `serving.json` in the versions folder records which
one is current, the ones that were current before it (what a rollback returns
to) and the candidates loaded beside it, so that a restart serves the same.

A version becomes current only when its `version.json` carries a passed eval
gate (`python -m bench.gate <id>` writes it): a candidate that regresses is
never promoted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import BadRequest, Conflict, NotFound
from common.files import atomic_write_bytes
from common.request_context import MODEL_VERSION_PATTERN, valid_model_version

__all__ = [
    "GATE_KEY",
    "VERSION_FILE",
    "ServingState",
    "VersionStore",
    "check_version_id",
]

VERSION_FILE = "version.json"
SERVING_FILE = "serving.json"
GATE_KEY = "gate"
# A model directory that can be served has at least these.
_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def _servable(directory: Path) -> bool:
    return all((directory / name).is_file() for name in _MODEL_FILES)


def check_version_id(version: str) -> str:
    """`version` when it is a valid version id, else a 400 saying the shape."""
    if not valid_model_version(version):
        raise BadRequest(
            f"Invalid model version id {version!r}: it must match {MODEL_VERSION_PATTERN}.",
            param="version",
            code="invalid_model_version",
        )
    return version


@dataclass
class ServingState:
    """What serves: `current` (None: the base model), what was current before (oldest
    first), and the candidates loaded beside it."""

    current: str | None = None
    history: list[str | None] = field(default_factory=list)
    candidates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current, "history": self.history, "candidates": self.candidates}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServingState:
        def version(value: object) -> str | None:
            return value if isinstance(value, str) and valid_model_version(value) else None

        history = data.get("history")
        candidates = data.get("candidates")
        return cls(
            current=version(data.get("current")),
            history=[version(v) for v in history] if isinstance(history, list) else [],
            candidates=[v for v in candidates if isinstance(v, str) and valid_model_version(v)]
            if isinstance(candidates, list)
            else [],
        )


class VersionStore:
    """The versions folder: its model directories, their metadata and `serving.json`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, version: str) -> Path:
        """The directory of an existing version; 404 when there is none."""
        directory = self.root / check_version_id(version)
        if not _servable(directory):
            raise NotFound(
                f"No model version {version!r} under {self.root}: tune one first "
                "(python -m moe_svc.preference) or list them with GET /v1/versions.",
                param="version",
                code="model_version_not_found",
            )
        return directory

    def metadata(self, version: str) -> dict[str, Any]:
        """The version's `version.json` ({} when it has none or it does not parse)."""
        try:
            data = json.loads((self.path(version) / VERSION_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def ids(self) -> list[str]:
        """Every servable version, sorted by id."""
        if not self.root.is_dir():
            return []
        found = []
        for entry in sorted(self.root.iterdir()):
            if valid_model_version(entry.name) and _servable(entry):
                found.append(entry.name)
        return found

    def check_gate(self, version: str) -> dict[str, Any]:
        """The version's passed eval gate; 409 when it has none or it failed."""
        gate = self.metadata(version).get(GATE_KEY)
        if not isinstance(gate, dict):
            raise Conflict(
                f"Model version {version!r} has not been through the eval gate: run "
                f"`python -m bench.gate {version}` and promote it if it passes.",
                code="eval_gate_missing",
            )
        if gate.get("passed") is not True:
            failed = ", ".join(str(f) for f in gate.get("failed", [])) or "see version.json"
            raise Conflict(
                f"Model version {version!r} failed the eval gate ({failed}): it is not promoted.",
                code="eval_gate_failed",
            )
        return gate

    def read_state(self) -> ServingState:
        try:
            data = json.loads((self.root / SERVING_FILE).read_text())
        except (OSError, ValueError):
            return ServingState()
        state = ServingState.from_dict(data if isinstance(data, dict) else {})
        # A version deleted by hand since is no longer served.
        present = set(self.ids())
        if state.current is not None and state.current not in present:
            state.current = None
        state.candidates = [v for v in state.candidates if v in present]
        return state

    def write_state(self, state: ServingState) -> None:
        """Write `serving.json` atomically (a crash leaves the old or the new one)."""
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(
            self.root / SERVING_FILE, (json.dumps(state.to_dict(), indent=2) + "\n").encode()
        )
