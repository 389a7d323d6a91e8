"""Which model serves: versions loaded, promoted behind the gate, rolled back, and what a
restart serves (`serving.json`). Fake servers stand in for loaded models."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from common.errors import Conflict, NotFound
from moe_svc.model_pool import ModelPool
from moe_svc.serving import ModelServer
from moe_svc.versions import VersionStore


class _Engine:
    def __init__(self) -> None:
        self.stopped = False

    def run(self) -> None:
        return None

    def stop(self) -> None:
        self.stopped = True


class _Server:
    def __init__(self, label: str) -> None:
        self.label = label
        self.name = "tiny"
        self.version: str | None = None
        self.engine = _Engine()


def _version(root: Path, name: str, gate: dict[str, Any] | None) -> None:
    directory = root / name
    directory.mkdir(parents=True)
    for file in ("config.json", "model.safetensors", "tokenizer.json"):
        (directory / file).write_text("{}")
    metadata: dict[str, Any] = {"id": name, "parent": "base"}
    if gate is not None:
        metadata["gate"] = gate
    (directory / "version.json").write_text(json.dumps(metadata))


@pytest.fixture
def store(tmp_path: Path) -> VersionStore:
    _version(tmp_path, "good", {"passed": True})
    _version(tmp_path, "bad", {"passed": False, "failed": ["maths accuracy 0.3 -> 0.1"]})
    _version(tmp_path, "ungated", None)
    return VersionStore(tmp_path)


def _pool(store: VersionStore) -> tuple[ModelPool, list[str]]:
    loads: list[str] = []

    def load(path: Path, version: str) -> ModelServer:
        loads.append(version)
        return cast(ModelServer, _Server(version))

    base = cast(ModelServer, _Server("base"))
    return ModelPool(base, threading.Thread(target=lambda: None), store, load), loads


def _label(server: ModelServer) -> str:
    return cast(_Server, server).label


async def test_requests_reach_the_version_they_name(store: VersionStore) -> None:
    pool, loads = _pool(store)
    await pool.restore()
    with pytest.raises(NotFound):
        pool.server("good")  # not loaded: never silently the current model
    await pool.load("good")
    await pool.load("good")
    assert loads == ["good"]
    assert _label(pool.server("good")) == "good"
    assert _label(pool.server(None)) == "base"
    with pytest.raises(NotFound):
        await pool.load("missing")


async def test_promotion_needs_a_passed_gate(store: VersionStore) -> None:
    pool, _ = _pool(store)
    await pool.restore()
    for version, code in (("bad", "eval_gate_failed"), ("ungated", "eval_gate_missing")):
        with pytest.raises(Conflict) as refused:
            await pool.promote(version)
        assert refused.value.code == code
    assert pool.current_version is None


async def test_promote_roll_back_and_restart(store: VersionStore) -> None:
    pool, _ = _pool(store)
    await pool.restore()
    await pool.promote("good")
    assert _label(pool.server(None)) == "good"
    with pytest.raises(Conflict):
        await pool.unload("good")  # the current model is not unloaded
    # A restart serves what was current.
    restarted, loads = _pool(store)
    await restarted.restore()
    assert loads == ["good"] and restarted.current_version == "good"
    assert await restarted.rollback() is None
    assert _label(restarted.server(None)) == "base"
    with pytest.raises(Conflict):
        await restarted.rollback()
    again, _ = _pool(store)
    await again.restore()
    assert again.current_version is None


async def test_a_version_deleted_by_hand_is_no_longer_served(store: VersionStore) -> None:
    pool, _ = _pool(store)
    await pool.restore()
    await pool.load("good")
    (store.root / "good" / "model.safetensors").unlink()
    restarted, loads = _pool(store)
    await restarted.restore()
    assert loads == [] and restarted.describe()["candidates"] == []
