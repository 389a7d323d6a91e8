"""The eval gate (`python -m bench.gate`): its verdict, and a run on tiny models whose
verdict moe_svc then reads before promoting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.gate import Figures, main, verdict
from common.errors import Conflict
from moe_svc.versions import VersionStore
from tests.helpers.tiny_llm import make_tiny_llm

_TEXT = "The capital of France is Paris. Numbers 0 1 2 3 4 5 6 7 8 9 and symbols. " * 40


def _figures(science: float, qa: float, maths: float) -> Figures:
    return Figures(losses={"science": science, "code": 2.0}, qa=qa, maths=maths)


def test_verdict_passes_what_does_not_regress() -> None:
    gate = verdict(_figures(3.0, 0.5, 0.2), _figures(3.01, 0.47, 0.25), 0.02, 0.05)
    assert gate["passed"] and gate["failed"] == []
    assert gate["perplexity"]["science"]["ratio"] == pytest.approx(1.01005, abs=1e-4)


def test_verdict_names_each_regression() -> None:
    # exp(0.03) = +3% perplexity; 0.5 -> 0.4 accuracy.
    gate = verdict(_figures(3.0, 0.5, 0.2), _figures(3.03, 0.4, 0.2), 0.02, 0.05)
    assert not gate["passed"]
    assert [f.split()[0] for f in gate["failed"]] == ["science", "qa"]


def test_a_run_writes_the_verdict_moe_svc_reads(tmp_path: Path) -> None:
    models = tmp_path / "models"
    parent = make_tiny_llm(models / "base", seed=0)
    version = models / "versions" / "same"
    shutil.copytree(parent, version)
    (version / "version.json").write_text(json.dumps({"id": "same", "parent": "base"}))
    corpora = tmp_path / "corpora"
    for domain in ("science", "code"):
        (corpora / domain).mkdir(parents=True)
        (corpora / domain / "val.txt").write_text(_TEXT)
    (corpora / "manifest.json").write_text("{}")
    store = VersionStore(models / "versions")
    with pytest.raises(Conflict):
        store.check_gate("same")
    args = ["same", "--models", str(models), "--corpora", str(corpora), "--window", "32"]
    assert main([*args, "--qa", "3", "--maths", "3"]) == 0
    gate = store.check_gate("same")  # the same weights: passed
    assert set(gate["perplexity"]) == {"science", "code"}
    assert all(p["ratio"] == 1.0 for p in gate["perplexity"].values())
    assert gate["samples"] == {"windows": 2, "window": 32, "qa": 3, "maths": 3}
    # The other figures of version.json stay.
    assert json.loads((version / "version.json").read_text())["parent"] == "base"
