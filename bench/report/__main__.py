"""The platform's report card: measure the platform, write docs/report.md and its charts.

    .venv/bin/python -m bench.report                 # full mode (about 30 min on 2 cores)
    .venv/bin/python -m bench.report --quick         # small samples (a few minutes; CI)
    .venv/bin/python -m bench.report --url http://127.0.0.1:8000 --key sk-gw-...

Without `--url` it starts a platform as `make up` does (free loopback ports, a
temporary var dir) and stops it afterwards. Every evaluation is a benchmark
script's own function (bench/humaneval.py, reasoning_eval.py, rag_eval.py, ...)
run on a sample whose size the mode sets (`SIZES`). Writes `<out>/report.md`,
`<out>/report/*.png` and `<out>/report/report.json` (every figure, for the UI).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.report import compare, docs_sync, history, quality, speed
from bench.report.charts import draw_all
from bench.report.figures import Figure, of_runs
from bench.report.render import load_targets, render
from bench.report.subject import Subject, platform_under_test

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Sizes:
    knowledge: int  # held-out wiki questions (of 33), each closed-book and with RAG
    humaneval: int  # HumanEval problems (of 164)
    math_every: int  # every k-th held-out word problem (of 129)
    strategies: tuple[str, ...]
    clients: tuple[int, ...]  # concurrent streams of the throughput rounds
    tokens: int  # new tokens per stream
    rounds: int  # repetitions of each speed measurement
    intents: int  # held-out utterances (of 219)
    rag_docs: int  # BBC News articles indexed per query form
    rag_queries: int  # queries per form
    images_per_prompt: int  # generated images per prompt (20 prompts)
    latency_requests: int  # requests per round of the gateway, memory and tools latencies
    long_turns: int  # turns of the long conversation (context window)
    image_steps: int  # denoising steps per image (the served default is 25)


SIZES = {
    # quick: what CI runs to keep the report working (its figures are not the report's)
    "quick": Sizes(2, 1, 129, ("direct", "pal"), (1, 4), 16, 1, 20, 20, 3, 1, 5, 12, 8),
    # full: every held-out question, HumanEval problem and word problem (about 20 minutes
    # on a quiet 2-core machine)
    "full": Sizes(33, 164, 1, ("direct", "pal"), (1, 4, 8, 16), 48, 3, 219, 300, 60, 5, 30, 60, 25),
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kib = 0
    with open("/proc/meminfo") as info:
        memory_kib = int(info.readline().split()[1])
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def commit() -> tuple[str, bool]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    return git("rev-parse", "--short=12", "HEAD") or "unknown", bool(
        git("status", "--porcelain", "--untracked-files=no")
    )


def _quantiles(values: list[float]) -> dict[str, float]:
    if len(values) < 2:
        return {"p50": values[0], "p95": values[0]}
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return {"p50": statistics.median(values), "p95": cuts[18]}


def step(name: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:6.0f} s] {name}", flush=True)


@dataclass
class Timings:
    """The timed figures' rounds, each round taken at a different point of the run."""

    throughput: speed.Throughput
    gateway: list[float] = field(default_factory=list)
    memory: dict[str, list[float]] = field(default_factory=dict)
    tools: dict[str, list[float]] = field(default_factory=dict)
    route: list[float] = field(default_factory=list)

    def round(self, subject: Subject, sizes: Sizes) -> None:
        """One round of every timed figure."""
        tp = speed.throughput(subject, list(sizes.clients), sizes.tokens, 1)
        for mine, theirs in (
            (self.throughput.aggregate, tp.aggregate),
            (self.throughput.ttft, tp.ttft),
            (self.throughput.itl, tp.itl),
        ):
            for clients, values in theirs.items():
                mine.setdefault(clients, []).extend(values)
        n = sizes.latency_requests
        self.gateway.append(speed.gateway_overhead(subject, n, 1).value)
        for name, figure in speed.memory_latency(subject, n, 1).items():
            self.memory.setdefault(name, []).append(figure.value)
        for name, figure in speed.tools_latency(subject, n, 1).items():
            self.tools.setdefault(name, []).append(figure.value)
        self.route.append(speed.route_latency(subject, n))


def measure(subject: Subject, sizes: Sizes) -> dict[str, Any]:
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    experts: dict[str, Any] = {}
    timings = Timings(speed.Throughput(sizes.tokens))
    # The timed figures' rounds are spread over the run (start, middle, end): their
    # range then holds what a machine drifts by in that time, not only back-to-back noise.
    due = [0, 1, 2][: sizes.rounds]

    def timed_round(point: int) -> None:
        if point in due:
            step(f"timed figures, round {due.index(point) + 1} of {len(due)}", t0)
            timings.round(subject, sizes)

    timed_round(0)
    step("knowledge: closed-book", t0)
    closed, experts["knowledge (closed-book)"], _ = quality.knowledge(
        subject, sizes.knowledge, with_rag=False
    )
    step("knowledge: with RAG", t0)
    rag, experts["knowledge (RAG answers)"], _ = quality.knowledge(
        subject, sizes.knowledge, with_rag=True
    )
    results["knowledge"] = {"closed_book": closed.as_dict(), "rag": rag.as_dict()}

    step("code: HumanEval", t0)
    passed, experts["code (HumanEval)"], code_extra = quality.code(subject, sizes.humaneval)
    results["code"] = {"pass_at_1": passed.as_dict(), **code_extra}

    timed_round(1)
    step("math: held-out word problems", t0)
    strategies, experts["math (word problems)"], costs = quality.math(
        subject, sizes.math_every, sizes.strategies
    )
    best = max(strategies, key=lambda s: strategies[s].value)
    results["math"] = {
        "strategies": {s: f.as_dict() for s, f in strategies.items()},
        "costs": costs,
        "best": best,
    }

    step("context window", t0)
    results["context"] = speed.context_window(subject, sizes.long_turns)

    step("timelines: one auto request per intent", t0)
    results["timelines"] = speed.timelines(subject)
    for intent, row in results["timelines"].items():
        counts = row.pop("experts")
        if any(map(any, counts)):  # a direct tool call writes no model tokens: no row
            experts[f"auto: {intent}"] = counts
    results["experts"] = experts

    step("intents", t0)
    accuracy, macro_f1 = quality.intents(subject, sizes.intents)

    step("images", t0)
    adherence, judge_accuracy = quality.images(sizes.images_per_prompt, sizes.image_steps)
    results["images"] = {"adherence": adherence.as_dict(), "judge_accuracy": judge_accuracy}

    step("retrieval", t0)
    results["retrieval"] = quality.retrieval(sizes.rag_docs, sizes.rag_queries)
    timed_round(2)
    step("done", t0)

    tp = timings.throughput
    many = max(c for c in sizes.clients if c <= 8)
    results["throughput"] = {
        "tokens": sizes.tokens,
        "rounds": len(due),
        "streams": many,
        "aggregate": {str(c): v for c, v in tp.aggregate.items()},
        "ttft_ms": {str(c): [x * 1000 for x in v] for c, v in tp.ttft.items()},
        "itl_ms": {str(c): [x * 1000 for x in v] for c, v in tp.itl.items()},
        "batch1": tp.figure(1).as_dict(),
        "many": tp.figure(many).as_dict(),
    }
    results["intent"] = {
        "accuracy": accuracy.as_dict(),
        "macro_f1": macro_f1.as_dict(),
        "route_p50_ms": of_runs(timings.route).as_dict(),
    }
    results["gateway_overhead_ms"] = of_runs(timings.gateway).as_dict()
    results["memory_ms"] = {k: of_runs(v).as_dict() for k, v in timings.memory.items()}
    results["tools_ms"] = {k: of_runs(v).as_dict() for k, v in timings.tools.items()}
    # every timed figure's rounds, by the name `bench.report.compare` gives it
    results["rounds"] = {
        "throughput.batch1": tp.aggregate[1],
        "throughput.many": tp.aggregate[many],
        "intent.route_p50_ms": timings.route,
        "gateway_overhead_ms": timings.gateway,
        **{f"memory_ms.{k}": v for k, v in timings.memory.items()},
        **{f"tools_ms.{k}": v for k, v in timings.tools.items()},
    }
    return results


def add_costs(results: dict[str, Any]) -> None:
    """Cost per 1M tokens from the throughput figures and the VM's hourly price."""
    vm = load_targets()["vm"]

    def per_million(tok_s: float) -> float:
        return float(vm["usd_per_hour"]) / (tok_s * 3600) * 1_000_000

    one = Figure.from_dict(results["throughput"]["batch1"])
    many = Figure.from_dict(results["throughput"]["many"])
    results["cost"] = {
        "usd_per_hour": vm["usd_per_hour"],
        "many": per_million(many.value),
        "many_low": per_million(many.high),
        "many_high": per_million(many.low),
        "batch1": per_million(one.value),
        "batch1_low": per_million(one.high),
        "batch1_high": per_million(one.low),
    }


def method_notes(sizes: Sizes, mode: str) -> list[str]:
    math_sample = "every problem" if sizes.math_every == 1 else f"one problem in {sizes.math_every}"
    return [
        f"Knowledge QA: the first {sizes.knowledge} of `bench/data/knowledge_heldout.jsonl` "
        "(questions about the wiki's first 40 pages, none of them used in tests or tuning; "
        "a platform that bench.report starts builds those 40 pages alone), "
        "each asked of the core model alone and of model `auto` (router, retrieval, cited "
        "answer); right when the answer (without the appended source list) holds the "
        "expected fact.",
        f"Code: the first {sizes.humaneval} HumanEval problems, greedy, one sample, the "
        "function run with the problem's tests in tools_svc's sandbox "
        "(`bench.humaneval.evaluate`). The code expert trained on most HumanEval prompts: "
        "not comparable with published figures.",
        f"Math: {math_sample} of `bench/data/arithmetic_heldout.jsonl` "
        f"through reasoning_svc with strategies {', '.join(sizes.strategies)} "
        "(`bench.reasoning_eval.evaluate`); best: the strategy with the highest accuracy.",
        f"Throughput: {sizes.tokens} new tokens per stream straight to moe_svc, "
        f"{sizes.rounds} round(s) per number of streams ({', '.join(map(str, sizes.clients))}).",
        f"Intents: {sizes.intents} utterances of the router's held-out test split, "
        "`POST /v1/route` one at a time; `/v1/route` p50: the first "
        f"{sizes.latency_requests} of them, once per round.",
        f"Retrieval: {sizes.rag_docs} BBC News articles (seed 0), {sizes.rag_queries} queries "
        "per form, rag_svc's engine in process (`bench.rag_eval`), reference plain bm25s.",
        f"Images: {sizes.images_per_prompt} image(s) for each of the 20 held-out prompts, "
        f"DDIM {sizes.image_steps} steps at the served guidance, judged by the Fashion-MNIST "
        "classifier.",
        f"Latencies: {sizes.latency_requests} requests per round, {sizes.rounds} round(s); "
        "the figure is the median of the rounds' medians.",
        "Spreads: accuracies carry a 95% Wilson interval over their sample (greedy decoding "
        "gives the same answers on a rerun, so the interval is the sampling error); speeds "
        "and latencies the range of their rounds, taken at the start, the middle and the "
        "end of each run, over this run and up to two runs before it (the reports it "
        "replaced, `meta.history`): the machine's speed changes from run to run by more "
        "than within one; the value is this run's median round.",
        f"Mode: {mode}. Expert load: moe_svc's `/v1/experts/stats` before and after each "
        "evaluation.",
    ]


def summarise_streams(results: dict[str, Any]) -> None:
    """Replace the raw TTFT/ITL samples by their quantiles (the charts had them)."""
    t = results["throughput"]
    t["quantiles"] = {
        c: {
            "ttft_p50": _quantiles(t["ttft_ms"][c])["p50"],
            "ttft_p95": _quantiles(t["ttft_ms"][c])["p95"],
            "itl_p50": _quantiles(t["itl_ms"][c])["p50"],
            "itl_p95": _quantiles(t["itl_ms"][c])["p95"],
        }
        for c in t["ttft_ms"]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small samples (CI)")
    parser.add_argument("--url", help="a running platform's gateway (default: start one)")
    parser.add_argument("--key", help="its API key (with --url)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs", help="where report.md goes")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    sizes = SIZES[mode]
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    # The code that measures: the commit at the start (later commits do not change a run).
    head, dirty = commit()
    env = {"RAG_WIKI_MAX_PAGES": "40", "ROUTER_RAG_TIMEOUT_S": "300"}
    with platform_under_test(args.url, args.key, env) as subject:
        results = measure(subject, sizes)
    rounds = results.pop("rounds")
    results["meta"] = {
        "mode": mode,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": head,
        "dirty": dirty,
        "machine": machine(),
        "wall_s": time.perf_counter() - started,
        # Other work on the machine slows every figure: the 1-minute load at both ends.
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "samples": ", ".join(
            f"{k} {'/'.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in vars(sizes).items()
        ),
        "method": method_notes(sizes, mode),
        "rounds": rounds,
    }
    chart_dir = args.out / "report"
    previous_json = chart_dir / "report.json"
    previous = json.loads(previous_json.read_text()) if previous_json.exists() else None
    if previous is not None and previous.get("meta", {}).get("mode") != mode:
        previous = None
    if previous is not None:
        # the report this run replaces: do this run's figures land in its spreads?
        results["meta"]["previous"] = {
            "date": previous["meta"]["date"],
            "commit": previous["meta"]["commit"],
            "mode": mode,
            "rows": [
                {
                    "figure": name,
                    "value": f.value,
                    "low": f.low,
                    "high": f.high,
                    "spread": f.spread,
                    "rerun": value,
                    "within": ok,
                }
                for name, f, value, ok in compare.compare(previous, results)
            ],
        }
    history.pool(results, previous)
    add_costs(results)
    draw_all(results, chart_dir)
    summarise_streams(results)
    for key in ("ttft_ms", "itl_ms"):
        del results["throughput"][key]
    (chart_dir / "report.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "report.md").write_text(render(results, "report"))
    print(f"wrote {args.out / 'report.md'} and {len(list(chart_dir.glob('*.png')))} charts")
    if args.out.resolve() == (REPO_ROOT / "docs").resolve():
        for path in docs_sync.rewrite(results):
            print(f"rewrote the report figures in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
