"""The training CLI learns a tiny model on CPU, evaluates it, and resumes exactly."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from moe_svc.modeling import load_pretrained
from moe_svc.train import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Patterned text a small model can learn quickly."""
    rng = random.Random(0)
    animals = ["cat", "dog", "fox", "owl", "bee"]
    verbs = ["sees", "likes", "follows", "greets"]
    lines = [
        f"the {rng.choice(animals)} {rng.choice(verbs)} the {rng.choice(animals)}."
        for _ in range(1500)
    ]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines))
    return path


def _args(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--init-config", "tiny", "--tokenizer", "bytes", "--data", str(corpus),
        "--out", str(out), "--batch-size", "8", "--seq-len", "48", "--lr", "3e-3",
        "--warmup-steps", "5", "--eval-every", "20", "--eval-batches", "4",
        "--save-every", "10", "--no-progress", "--threads", "1", *extra,
    ]  # fmt: skip


def test_training_reduces_loss_and_saves_a_transformers_model(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    result = main(_args(corpus, out, "--steps", "40", "--z-loss-coef", "1e-3"))
    losses = [entry["loss"] for entry in result["train"]]
    assert result["step"] == 40 and len(losses) == 40
    assert losses[0] > 5.0  # ~ln(256): uniform over bytes
    assert np.mean(losses[-5:]) < 3.0
    evals = result["eval"]
    assert [e["step"] for e in evals] == [20, 40]
    assert evals[-1]["ppl"] < evals[0]["ppl"] < 256
    load = evals[-1]["expert_load"]  # per layer, per expert shares of routed tokens
    assert len(load) == 2 and all(sum(row) == pytest.approx(1.0) for row in load)
    printed = capsys.readouterr()
    assert "expert load" in printed.out + printed.err
    assert len((out / "log.jsonl").read_text().splitlines()) == 40 + 2

    model = load_pretrained(out / "model")
    hf = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    ids = torch.tensor([list(b"the cat sees the")])
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=1e-4, rtol=0)


def test_resume_continues_exactly(corpus: Path, tmp_path: Path) -> None:
    whole = main(_args(corpus, tmp_path / "whole", "--steps", "16"))
    first = main(_args(corpus, tmp_path / "parts", "--steps", "16", "--stop-at", "10"))
    assert first["step"] == 10 and not (tmp_path / "parts" / "model").exists()
    assert torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=False)["step"] == 10
    second = main(_args(corpus, tmp_path / "parts", "--steps", "16", "--resume"))
    assert [e["step"] for e in second["train"]] == list(range(11, 17))
    resumed = [e["loss"] for e in first["train"] + second["train"]]
    continuous = [e["loss"] for e in whole["train"]]
    np.testing.assert_allclose(resumed, continuous, rtol=1e-4)
    a = load_pretrained(tmp_path / "whole" / "model").state_dict()
    b = load_pretrained(tmp_path / "parts" / "model").state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)


def test_train_only_routers_leaves_the_rest_unchanged(corpus: Path, tmp_path: Path) -> None:
    tokens = np.frombuffer(corpus.read_bytes(), dtype=np.uint8).astype(np.int64)
    np.save(tmp_path / "tokens.npy", tokens)  # token-file input instead of text
    base = tmp_path / "base"
    main(_args(tmp_path / "tokens.npy", base, "--steps", "5"))
    tuned = tmp_path / "tuned"
    main(
        [
            "--model-dir", str(base / "model"), "--tokenizer", "bytes",
            "--data", str(tmp_path / "tokens.npy"), "--out", str(tuned), "--steps", "5",
            "--train-only", "routers", "--batch-size", "4", "--seq-len", "32",
            "--lr", "1e-2", "--warmup-steps", "1", "--no-progress",
        ]
    )  # fmt: skip
    before = load_pretrained(base / "model").state_dict()
    after = load_pretrained(tuned / "model").state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed and all(".mlp.gate." in name for name in changed)


def test_cli_entry_point_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "moe_svc.train", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    for flag in ("--init-config", "--model-dir", "--train-only", "--resume", "--z-loss-coef"):
        assert flag in done.stdout


def test_log_lines_are_json(corpus: Path, tmp_path: Path) -> None:
    main(_args(corpus, tmp_path / "run", "--steps", "3"))
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["step"] == 1
