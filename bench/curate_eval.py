"""Precision/recall of each curation stage on the planted corpus, and throughput.

    python -m bench.curate_eval [--clean 1000] [--seed 0]

The corpus (curate/planted.py) is BBC articles with planted exact and near copies,
boilerplate, other-language texts and PII. The reference in the same run is the
cheapest pipeline, exact duplicates only, over the same records: the ratio says
what the other stages cost on top of reading and hashing.
"""

from __future__ import annotations

import argparse
import time

from curate.evaluation import evaluate
from curate.planted import planted_corpus
from curate.records import Record
from curate.stages import CurationConfig, curate_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clean", type=int, default=1000, help="clean articles in the corpus")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    corpus = planted_corpus(args.clean, seed=args.seed)
    started = time.perf_counter()
    curate_records((Record(r.id, r.text) for r in corpus), CurationConfig(stages=("exact_dedup",)))
    reference = time.perf_counter() - started
    scores = evaluate(corpus)

    print(f"planted corpus: {len(corpus)} records ({args.clean} clean articles, seed {args.seed})")
    print(f"{'stage':<12} {'precision':>9} {'recall':>7} {'planted':>8} {'seconds':>8}")
    stages = scores["report"]["stages"]
    for name, score in scores["stages"].items():
        seconds = stages[name]["seconds"]
        print(
            f"{name:<12} {score.precision:>9.3f} {score.recall:>7.3f} "
            f"{score.support:>8} {seconds:>8.2f}"
        )
    for kind, score in scores["pii"].items():
        print(f"pii {kind:<8} {'':>9} {score.recall:>7.3f} {score.support:>8}")
    print(
        f"pii placeholders that replaced planted values: {scores['pii_precision']:.3f}; "
        f"decoy numbers kept: {scores['decoys_kept']:.3f}; "
        f"pii stage {stages['pii']['seconds']:.2f}s"
    )
    rate = scores["records_per_second"]
    print(
        f"throughput: {rate:.0f} records/s with every stage, {len(corpus) / reference:.0f} "
        f"records/s exact duplicates only (reference): "
        f"{scores['seconds'] / reference:.1f}x the time"
    )


if __name__ == "__main__":
    main()
