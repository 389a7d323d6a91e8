"""The labelled intent utterances (`router_svc/data/intents.jsonl`) and their fixed split.

Each line is `{"text", "intent", "split"}` with `split` one of train, val
(temperature scaling and the choice of regularisation) and test (held out:
only `bench/intent_eval.py` reads it). The split is committed with the data,
stratified per intent, so every run evaluates on the same utterances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common.contracts.router import INTENTS

__all__ = ["DATASET", "Example", "load_examples"]

DATASET = Path(__file__).resolve().parent / "data" / "intents.jsonl"
Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    split: Split


def load_examples(path: Path = DATASET, split: Split | None = None) -> list[Example]:
    """The examples of `split` (all when None), in file order; checks labels and splits."""
    examples: list[Example] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row["intent"] not in INTENTS or row["split"] not in ("train", "val", "test"):
            raise ValueError(f"{path}:{number}: bad intent or split in {row}")
        if split is None or row["split"] == split:
            examples.append(Example(row["text"], row["intent"], row["split"]))
    return examples
