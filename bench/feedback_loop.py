"""`python -m bench.feedback_loop`: users' feedback -> a tuned model -> is it better?

    .venv/bin/python -m bench.feedback_loop                       # launches a platform
    .venv/bin/python -m bench.feedback_loop --url http://127.0.0.1:8000 --key $KEY \\
        --models var/models                                       # next to `make up`

Simulated users ask the platform (model `auto`, as the web UI does) the `train` half
of a labelled question set (bench/data/feedback_loop_qa.jsonl), several sampled
answers each, and a scripted judge rates every answer through `POST /v1/feedback`:
thumbs up when it names an accepted answer in at most `--concise` words (citations
and the sources list aside), down otherwise. Then, through the platform's own path:

1. collect: `GET /v1/feedback/export?format=kto` (the operator's tenant), kept to the
   train questions;
2. tune: `python -m moe_svc.preference --method kto` into a new version beside the
   served model;
3. gate: `python -m bench.gate` (perplexity per domain, closed-book QA, arithmetic
   against the parent);
4. evaluate: a rollout of the version (`PUT /v1/admin/rollout`), first at share 0 (the
   current model answers), then at share 1 (the version answers), each asked the
   `held_out` questions greedily, answers rated by the same judge through the feedback
   API; the rollout's counts per version and the pairwise win rate of the version
   over the current model on the questions neither saw;
5. the rollout is rolled back (`--promote` promotes when the gate passed and the
   version won more than it lost).

Prints a Markdown summary; `--json` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.platform import launched_platform
from moe_svc.build_default import MOE_NAME
from tests.helpers.servers import REPO_ROOT

__all__ = ["Judge", "main", "pairwise"]

QA_FILE = Path(__file__).parent / "data" / "feedback_loop_qa.jsonl"
_CITATION = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class Judge:
    """Prefers answers that are right and short."""

    concise_words: int

    @staticmethod
    def answer_text(content: str) -> str:
        """The answer without its citation markers and the sources list after it."""
        body = re.split(r"\n+\**Sources\**:?", content, maxsplit=1)[0]
        return _CITATION.sub("", body).strip()

    def right(self, content: str, accepted: list[str]) -> bool:
        text = self.answer_text(content).lower()
        return any(re.search(rf"\b{re.escape(a.lower())}\b", text) for a in accepted)

    def concise(self, content: str) -> bool:
        return 0 < len(self.answer_text(content).split()) <= self.concise_words

    def rating(self, content: str, accepted: list[str]) -> int:
        return 1 if self.right(content, accepted) and self.concise(content) else -1

    def score(self, content: str, accepted: list[str]) -> tuple[int, int]:
        """Orders answers: right first, then concise."""
        return int(self.right(content, accepted)), int(self.concise(content))


def pairwise(
    judge: Judge, ours: list[str], theirs: list[str], accepted: list[list[str]]
) -> dict[str, int]:
    """Wins, losses and ties of `ours` against `theirs`, question by question."""
    tally = {"wins": 0, "losses": 0, "ties": 0}
    for a, b, ok in zip(ours, theirs, accepted, strict=True):
        left, right = judge.score(a, ok), judge.score(b, ok)
        tally["wins" if left > right else "losses" if left < right else "ties"] += 1
    return tally


@dataclass
class Asked:
    contents: list[str] = field(default_factory=list)
    versions: list[str | None] = field(default_factory=list)
    seconds: float = 0.0


class Platform:
    def __init__(self, url: str, key: str, timeout_s: float) -> None:
        self.client = httpx.Client(
            base_url=url.rstrip("/") + "/v1",
            headers={"Authorization": f"Bearer {key}"},
            timeout=timeout_s,
        )

    def ask_and_rate(
        self,
        judge: Judge,
        rows: list[dict[str, Any]],
        samples: int,
        temperature: float,
        max_tokens: int,
    ) -> Asked:
        """Each question `samples` times (a session each), every answer rated by the judge."""
        asked = Asked()
        run = uuid.uuid4().hex[:8]
        started = time.perf_counter()
        for i, row in enumerate(rows):
            for j in range(samples):
                session = f"loop-{run}-{i}-{j}"
                reply = self.client.post(
                    "/chat/completions",
                    json={
                        "model": "auto",
                        "messages": [{"role": "user", "content": row["question"]}],
                        "session_id": session,
                        "temperature": temperature,
                        "max_tokens": max_tokens,
                    },
                )
                reply.raise_for_status()
                body = reply.json()
                content = body["choices"][0]["message"]["content"] or ""
                asked.contents.append(content)
                asked.versions.append(reply.headers.get("x-model-version"))
                rated = self.client.post(
                    "/feedback",
                    json={
                        "session_id": session,
                        "message_id": body["message_id"],
                        "rating": judge.rating(content, row["answers"]),
                    },
                )
                rated.raise_for_status()
            print(f"  {i + 1}/{len(rows)} asked", flush=True)
        asked.seconds = time.perf_counter() - started
        return asked

    def export_kto(self, questions: set[str]) -> list[dict[str, Any]]:
        reply = self.client.get("/feedback/export", params={"format": "kto"})
        reply.raise_for_status()
        rows = [json.loads(line) for line in reply.text.splitlines() if line.strip()]
        return [r for r in rows if r["prompt"] and r["prompt"][-1]["content"] in questions]

    def rollout(self, method: str, path: str = "", body: dict[str, Any] | None = None) -> Any:
        reply = self.client.request(method, f"/admin/rollout{path}", json=body)
        if reply.status_code >= 400:
            raise SystemExit(f"rollout {method} {path}: {reply.status_code} {reply.text}")
        return reply.json()


def _run(command: list[str]) -> int:
    print("$ " + " ".join(command), flush=True)
    return subprocess.run(command, cwd=REPO_ROOT, check=False).returncode


@contextmanager
def _platform(args: argparse.Namespace) -> Iterator[tuple[str, str, Path]]:
    """(gateway URL, operator key, models dir): the given platform, or one launched."""
    if args.url:
        key = args.key or (REPO_ROOT / "var" / "gateway" / "local_api_key").read_text().strip()
        yield args.url, key, args.models
        return
    with launched_platform({}, "feedback-loop-") as (launch, key):
        yield launch.gateway, key, launch.var_dir / "models"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running gateway (default: launch a platform)")
    parser.add_argument("--key", help="an admin key of tenant default (default: make up's)")
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "var" / "models")
    parser.add_argument("--version", default=f"loop-{time.strftime('%m%d-%H%M')}")
    parser.add_argument("--samples", type=int, default=2, help="answers per train question")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--concise", type=int, default=25, help="most words of a concise answer")
    parser.add_argument("--steps", type=int, default=40, help="tuning steps")
    parser.add_argument("--lr", type=float, help="tuning rate (default: the tuner's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--promote", action="store_true", help="promote a passing winner")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument(
        "--collected", type=Path, help="a KTO export collected before: skip collecting"
    )
    args = parser.parse_args()
    rows = [json.loads(line) for line in QA_FILE.read_text().splitlines() if line.strip()]
    train = [r for r in rows if r["split"] == "train"]
    held_out = [r for r in rows if r["split"] == "held_out"]
    judge = Judge(args.concise)
    figures: dict[str, Any] = {"version": args.version, "samples": args.samples}
    with _platform(args) as (url, key, models):
        platform = Platform(url, key, timeout_s=600)
        data = models / "feedback" / f"{args.version}.kto.jsonl"
        if args.collected:
            # An earlier run's export: the same users' feedback, not asked again.
            examples = [json.loads(line) for line in args.collected.read_text().splitlines()]
            examples = [e for e in examples if e["completion"][-1]["content"].strip()]
            figures["collect"] = {"answers": None, "seconds": None, "from": str(args.collected)}
        else:
            print(f"collect: {len(train)} questions x {args.samples} answers", flush=True)
            collected = platform.ask_and_rate(
                judge, train, args.samples, args.temperature, args.max_tokens
            )
            examples = platform.export_kto({r["question"] for r in train})
            figures["collect"] = {
                "answers": len(collected.contents),
                "seconds": round(collected.seconds, 1),
            }
        figures["collect"].update(
            examples=len(examples), thumbs_up=sum(1 for e in examples if e["label"])
        )
        data.parent.mkdir(parents=True, exist_ok=True)
        data.write_text("".join(json.dumps(e) + "\n" for e in examples))
        parent = models / MOE_NAME
        if not parent.is_dir():  # a launched platform serves the repository's build
            parent = REPO_ROOT / "var" / "models" / MOE_NAME
        started = time.perf_counter()
        tuned = _run(
            [sys.executable, "-m", "moe_svc.preference", "--method", "kto", "--data", str(data),
             "--version", args.version, "--base", str(parent), "--models-dir", str(models),
             "--steps", str(args.steps), "--threads", str(args.threads), "--no-progress",
             *(["--lr", str(args.lr)] if args.lr else [])]
        )  # fmt: skip
        if tuned != 0:
            raise SystemExit("tuning failed (its output above says why)")
        figures["tune_seconds"] = round(time.perf_counter() - started, 1)
        gated = _run(
            [sys.executable, "-m", "bench.gate", args.version, "--models", str(models),
             "--parent", str(parent), "--threads", str(args.threads)]
        )  # fmt: skip
        version_file = models / "versions" / args.version / "version.json"
        figures["gate"] = json.loads(version_file.read_text()).get("gate")
        print("evaluate: the current model, then the version, on the held-out questions")
        platform.rollout("PUT", body={"candidate": args.version, "share": 0.0})
        current = platform.ask_and_rate(judge, held_out, 1, 0.0, args.max_tokens)
        platform.rollout("PUT", body={"candidate": args.version, "share": 1.0})
        candidate = platform.ask_and_rate(judge, held_out, 1, 0.0, args.max_tokens)
        assert set(candidate.versions) == {args.version}, candidate.versions
        status = platform.rollout("GET")
        accepted = [r["answers"] for r in held_out]
        tally = pairwise(judge, candidate.contents, current.contents, accepted)
        decided = tally["wins"] + tally["losses"]
        figures["evaluate"] = {
            **tally,
            "win_rate": round(tally["wins"] / decided, 3) if decided else None,
            "rollout": status["active"],
            "seconds": round(current.seconds + candidate.seconds, 1),
        }
        better = gated == 0 and tally["wins"] > tally["losses"]
        outcome = "promote" if args.promote and better else "rollback"
        platform.rollout("POST", f"/{outcome}")
        figures["outcome"] = outcome
    _summary(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _summary(figures: dict[str, Any]) -> None:
    collect, evaluate, gate = figures["collect"], figures["evaluate"], figures["gate"] or {}
    counts = {v["label"]: v for v in (evaluate["rollout"] or {}).get("versions", [])}
    print(f"\n## Feedback loop: {figures['version']}\n")
    print(
        f"Collected {collect['answers'] or 'earlier'} rated answers in {collect['seconds']} s; "
        f"{collect['examples']} KTO examples ({collect['thumbs_up']} thumbs up); "
        f"tuned in {figures['tune_seconds']} s.\n"
    )
    print("| version | held-out answers | thumbs up | up rate |")
    print("|---|---|---|---|")
    for label, row in counts.items():
        print(f"| {label} | {row['answers']} | {row['up']} | {row['up_rate']} |")
    print(
        f"\nPairwise on {evaluate['wins'] + evaluate['losses'] + evaluate['ties']} held-out "
        f"questions: {evaluate['wins']} wins, {evaluate['losses']} losses, {evaluate['ties']} "
        f"ties (win rate {evaluate['win_rate']}); rollout p-value "
        f"{(evaluate['rollout'] or {}).get('p_value')}."
    )
    print(f"Eval gate: {'passed' if gate.get('passed') else 'failed'} {gate.get('failed', [])}")
    for domain, row in gate.get("perplexity", {}).items():
        print(f"- {domain}: perplexity {row['parent']} -> {row['candidate']}")
    for name, row in gate.get("accuracy", {}).items():
        print(f"- {name}: accuracy {row['parent']} -> {row['candidate']}")
    print(f"Outcome: {figures['outcome']}")


if __name__ == "__main__":
    raise SystemExit(main())
