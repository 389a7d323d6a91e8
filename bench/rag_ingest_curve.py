"""How rag_svc's per-document ingest cost and search latency change as a collection grows.

The collection is filled to the largest size by repeating the articles under
distinct ids, in calls of 64 documents, and measured at each size: the
milliseconds per document of the calls since the previous size, and the p50
of hybrid search without rerank (the query embedded by the real model).

Embedding is left out of the curve: it costs the same per document at any
size (the end-to-end rate, embedding included, is measured on the corpus by
`bench.rag_eval`). Documents here get a stand-in vector per chunk (a hash of
its text); everything else is the service's own: chunking, MinHash and the
duplicate check (repeats are kept: the threshold is set out of reach), BM25
tokens, the index appends, the segment written and fsynced.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.contracts.rag import DocumentIn
from common.minilm import MiniLMEmbedder
from rag_svc.collection import Collection
from rag_svc.ingestion import prepare_documents
from rag_svc.library import Library

__all__ = ["CurvePoint", "print_curve", "run_curve"]

BATCH = 64
SEARCHES = 50


class HashEmbedder(MiniLMEmbedder):
    """A unit vector per text from a hash of it: the curve leaves the model's cost out."""

    def __init__(self) -> None:  # no model to load
        pass

    def encode(self, texts: list[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        out = np.empty((len(texts), self.dimensions), np.float32)
        for i, text in enumerate(texts):
            out[i] = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(
                self.dimensions
            )
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


@dataclass(frozen=True)
class CurvePoint:
    documents: int
    chunks: int
    ms_per_document: float
    search_p50_ms: float
    search_p95_ms: float


def run_curve(library: Library, articles_text: list[str], sizes: str) -> list[CurvePoint]:
    """Grow one collection to each size in `sizes` (comma-separated) and measure there."""
    models = library.require_models()
    targets = sorted(int(n) for n in sizes.split(",") if n.strip())
    rng = random.Random(1)
    queries = [text.split(".")[0] for text in rng.sample(articles_text, SEARCHES)]
    stand_in = HashEmbedder()
    points: list[CurvePoint] = []
    with tempfile.TemporaryDirectory(prefix="rag-curve-") as tmp:
        config = replace(library.index_config, dedup_threshold=1.01)
        collection = Collection.create(Path(tmp), "curve", config, {})
        added, spent = 0, 0.0
        with tqdm(total=targets[-1], desc="ingest curve", unit="doc") as bar:
            for target in targets:
                while added < target:
                    n = min(BATCH, target - added)
                    documents = [
                        DocumentIn(
                            id=f"doc-{added + i}",
                            text=articles_text[(added + i) % len(articles_text)],
                        )
                        for i in range(n)
                    ]
                    started = time.perf_counter()
                    batch = prepare_documents(
                        documents,
                        collection=collection,
                        chunker=models.chunker,
                        minhasher=models.minhasher,
                        embedder=stand_in,
                        redact=False,
                    )
                    collection.commit(batch.documents)
                    spent += time.perf_counter() - started
                    added += n
                    bar.update(n)
                latencies = []
                for query in queries:
                    started = time.perf_counter()
                    models.retriever.search(collection, query, k=10, rerank=False)
                    latencies.append((time.perf_counter() - started) * 1000)
                points.append(
                    CurvePoint(
                        added,
                        collection.snapshot.live_chunks,
                        1000 * spent / (added - (points[-1].documents if points else 0)),
                        statistics.median(latencies),
                        statistics.quantiles(latencies, n=20)[18],
                    )
                )
                spent = 0.0
    return points


def print_curve(points: list[CurvePoint]) -> None:
    first = points[0].ms_per_document
    print("\ningest curve (embedding left out; per document: since the previous size)\n")
    print("| documents | chunks | ms/doc | vs first | hybrid search p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|")
    for p in points:
        print(
            f"| {p.documents} | {p.chunks} | {p.ms_per_document:.2f} | "
            f"{p.ms_per_document / first:.2f}x | {p.search_p50_ms:.1f} | {p.search_p95_ms:.1f} |"
        )
