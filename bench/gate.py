"""`python -m bench.gate VERSION`: the eval gate a tuned model version must pass to be promoted.

    .venv/bin/python -m bench.gate my-kto-1                 # ~5 minutes on 2 threads
    .venv/bin/python -m bench.gate my-kto-1 --maths 129     # every held-out problem

The version (`<models>/versions/<id>/`, its `version.json` naming its parent) and its
parent are scored the same way, in one run:

- perplexity on each specialisation domain's held-out text (the `val` split of
  `moe_svc.specialisation.corpora`, `--windows` windows of `--window` tokens);
- closed-book questions about common knowledge (bench/data/closed_book_qa.jsonl: right
  when the greedy answer names one of the accepted answers);
- arithmetic word problems answered directly (the hand-written held-out set,
  bench/data/arithmetic_heldout.jsonl, the first `--maths` of them).

The version fails when a domain's perplexity rises by more than `--max-ppl-increase`
(2%) or an accuracy falls by more than `--max-accuracy-drop` (5 points) below its
parent's. The verdict and every figure go into `version.json` under `gate`; moe_svc
promotes a version only when `gate.passed` is true (`moe_svc.versions`).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.moe_quality import greedy_engine_answers, load_template
from bench.moe_specialisation import held_out_batches, score
from common.files import atomic_write_bytes
from moe_svc.loader import load_model
from moe_svc.modeling import load_pretrained
from moe_svc.specialisation.analysis import RoutingCounts
from moe_svc.specialisation.corpora import build_corpora
from moe_svc.versions import GATE_KEY, VERSION_FILE, VersionStore
from reasoning_svc.answers import extract_answer, same_answer

__all__ = ["Figures", "main", "parent_dir", "verdict"]

DATA = Path(__file__).parent / "data"
QA_FILE = DATA / "closed_book_qa.jsonl"
MATHS_FILE = DATA / "arithmetic_heldout.jsonl"
ANSWER_TOKENS = 48


@dataclass
class Figures:
    """One model's scores: mean cross-entropy per domain, and accuracies."""

    losses: dict[str, float]
    qa: float
    maths: float


def parent_dir(models_dir: Path, metadata: dict[str, Any]) -> Path:
    """The model directory a version was tuned from: a version, or a model under `models_dir`."""
    parent = metadata.get("parent")
    if not isinstance(parent, str) or not parent:
        raise SystemExit("version.json names no parent: give --parent DIR")
    for candidate in (models_dir / "versions" / parent, models_dir / parent, Path(parent)):
        if (candidate / "config.json").is_file():
            return candidate
    raise SystemExit(f"the parent {parent!r} is not under {models_dir}: give --parent DIR")


def _rows(path: Path, limit: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows[:limit]


def _named(answer: str, accepted: list[str]) -> bool:
    return any(re.search(rf"\b{re.escape(a.lower())}\b", answer.lower()) for a in accepted)


def answers(model_dir: Path, questions: list[str]) -> list[str]:
    """Greedy answers of the model to each question (its chat template, our engine)."""
    loaded = load_model(model_dir, "float32")
    render = load_template(model_dir)
    prompts = [loaded.tokenizer.encode(render([{"role": "user", "content": q}])) for q in questions]
    outputs = greedy_engine_answers(loaded, prompts, ANSWER_TOKENS)
    return [loaded.tokenizer.decode(ids) for ids in outputs]


def measure(
    model_dir: Path,
    batches: dict[str, torch.Tensor],
    qa: list[dict[str, Any]],
    maths: list[dict[str, Any]],
) -> Figures:
    model = load_pretrained(model_dir)
    c = model.config
    experts = c.num_local_experts if c.is_moe else 1
    routing = RoutingCounts(c.num_hidden_layers, len(batches), experts)
    with torch.inference_mode():
        losses = score(model, batches, routing, lambda _i, logits: logits)
    del model
    # One load and one batch for both sets.
    questions = [f"{q['question']} Answer in a few words." for q in qa]
    questions += [f"{p['question']} Answer with the number only." for p in maths]
    replies = answers(model_dir, questions)
    said, solved = replies[: len(qa)], replies[len(qa) :]
    right_qa = sum(_named(a, q["answers"]) for a, q in zip(said, qa, strict=True))
    right_maths = sum(
        same_answer(extract_answer(a), _expected(p["answer"]))
        for a, p in zip(solved, maths, strict=True)
    )
    return Figures(
        losses=losses,
        qa=right_qa / max(1, len(qa)),
        maths=right_maths / max(1, len(maths)),
    )


def _expected(answer: object) -> str:
    if isinstance(answer, float) and answer.is_integer():
        return str(int(answer))
    return str(answer)


def verdict(
    parent: Figures, candidate: Figures, max_ppl_increase: float, max_accuracy_drop: float
) -> dict[str, Any]:
    """Pass/fail with the reasons, and every figure side by side."""
    failed = []
    perplexity = {}
    for domain, loss in parent.losses.items():
        before, after = math.exp(loss), math.exp(candidate.losses[domain])
        ratio = after / before
        perplexity[domain] = {
            "parent": round(before, 3),
            "candidate": round(after, 3),
            "ratio": round(ratio, 4),
        }
        if ratio > 1 + max_ppl_increase:
            failed.append(f"{domain} perplexity {before:.2f} -> {after:.2f}")
    accuracy = {}
    for name in ("qa", "maths"):
        before, after = getattr(parent, name), getattr(candidate, name)
        accuracy[name] = {"parent": round(before, 4), "candidate": round(after, 4)}
        if after < before - max_accuracy_drop:
            failed.append(f"{name} accuracy {before:.3f} -> {after:.3f}")
    return {
        "passed": not failed,
        "failed": failed,
        "perplexity": perplexity,
        "accuracy": accuracy,
        "limits": {"max_ppl_increase": max_ppl_increase, "max_accuracy_drop": max_accuracy_drop},
    }


def write_gate(version_dir: Path, gate: dict[str, Any]) -> None:
    """Put the gate's verdict into version.json (atomically: the old or the new file)."""
    path = version_dir / VERSION_FILE
    try:
        metadata = json.loads(path.read_text())
    except (OSError, ValueError):
        metadata = {}
    metadata[GATE_KEY] = gate
    atomic_write_bytes(path, (json.dumps(metadata, indent=2) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("version", help="the version id (a folder under <models>/versions)")
    parser.add_argument("--models", type=Path, default=Path("var/models"))
    parser.add_argument("--parent", type=Path, help="default: the parent version.json names")
    parser.add_argument("--corpora", type=Path, default=Path("var/specialisation/corpora"))
    parser.add_argument("--windows", type=int, default=2, help="held-out windows per domain")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--qa", type=int, default=1000, help="closed-book questions asked")
    parser.add_argument("--maths", type=int, default=40, help="arithmetic problems asked")
    parser.add_argument("--max-ppl-increase", type=float, default=0.02)
    parser.add_argument("--max-accuracy-drop", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    store = VersionStore(args.models / "versions")
    version_dir = store.path(args.version)
    parent = args.parent or parent_dir(args.models, store.metadata(args.version))
    if not (args.corpora / "manifest.json").exists():
        build_corpora(args.corpora)
    batches = held_out_batches(args.corpora, parent, args.windows, args.window)
    qa, maths = _rows(QA_FILE, args.qa), _rows(MATHS_FILE, args.maths)
    started = time.perf_counter()
    print(f"parent {parent}:", flush=True)
    before = measure(parent, batches, qa, maths)
    print(f"version {version_dir}:", flush=True)
    after = measure(version_dir, batches, qa, maths)
    gate = verdict(before, after, args.max_ppl_increase, args.max_accuracy_drop)
    gate.update(
        parent=str(parent),
        ran=int(time.time()),
        seconds=round(time.perf_counter() - started, 1),
        samples={
            "windows": args.windows,
            "window": args.window,
            "qa": len(qa),
            "maths": len(maths),
        },
    )
    write_gate(version_dir, gate)
    print(json.dumps(gate, indent=2))
    print("PASSED" if gate["passed"] else "FAILED: " + "; ".join(gate["failed"]))
    return 0 if gate["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
