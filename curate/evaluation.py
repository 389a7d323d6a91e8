"""Precision and recall of each stage on the planted corpus (curate/planted.py).

For a removing stage, precision is the share of the records it removed that were
planted for it, and recall the share of those planted for it that it removed.
For PII, recall is the share of planted values (per kind) gone from the kept
text, precision the share of placeholders that replaced a planted value, and the
decoys (order numbers, dates) that survived are counted too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from common.pii import CARD_TOKEN, EMAIL_TOKEN, PHONE_TOKEN
from curate.planted import PlantedRecord
from curate.records import Record
from curate.stages import CurationConfig, curate_records

__all__ = ["REMOVING_STAGES", "Score", "evaluate"]

REMOVING_STAGES = ("exact_dedup", "near_dedup", "quality", "language")
TOKENS = (EMAIL_TOKEN, PHONE_TOKEN, CARD_TOKEN)


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    support: int  # records (or values) planted for the stage


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 1.0


def evaluate(corpus: list[PlantedRecord], config: CurationConfig | None = None) -> dict[str, Any]:
    """Scores per stage, the PII scores per kind, and records per second."""
    started = time.perf_counter()
    result = curate_records((Record(r.id, r.text) for r in corpus), config)
    seconds = time.perf_counter() - started
    labels = {r.id: r.label for r in corpus}
    removed_by = {r.id: r.stage for r in result.rejected}
    scores: dict[str, Score] = {}
    for stage in REMOVING_STAGES:
        predicted = {i for i, s in removed_by.items() if s == stage}
        actual = {i for i, label in labels.items() if label == stage}
        hits = len(predicted & actual)
        scores[stage] = Score(_ratio(hits, len(predicted)), _ratio(hits, len(actual)), len(actual))
    kept = {r.id: r.text for r in result.kept}
    planted = {r.id: r for r in corpus}
    pii: dict[str, Score] = {}
    for kind in ("email", "phone", "card"):
        values = [
            (r.id, v) for r in corpus if r.label == "pii" and r.id in kept for v in r.pii[kind]
        ]
        gone = sum(v not in kept[i] for i, v in values)
        pii[kind] = Score(1.0, _ratio(gone, len(values)), len(values))
    tokens = sum(text.count(t) for text in kept.values() for t in TOKENS)
    true_tokens = sum(
        min(sum(kept[i].count(t) for t in TOKENS), sum(map(len, planted[i].pii.values())))
        for i in kept
        if planted[i].pii
    )
    decoys = [(r.id, d) for r in corpus if r.id in kept for d in r.decoys]
    return {
        "records": len(corpus),
        "seconds": seconds,
        "records_per_second": len(corpus) / seconds,
        "stages": scores,
        "pii": pii,
        "pii_precision": _ratio(true_tokens, tokens),
        "pii_records_lost": sum(r.label == "pii" and r.id not in kept for r in corpus),
        "decoys_kept": _ratio(sum(d in kept[i] for i, d in decoys), len(decoys)),
        "report": result.report,
    }
