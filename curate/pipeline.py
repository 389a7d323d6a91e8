"""Records through the stages in order: what each kept, changed or removed, and why.

A stage looks at one record at a time and answers with a `Decision`. The pipeline
keeps per-stage counts, the time each stage took and the first few examples, and
hands every removed record back with the stage that removed it, so nothing goes
missing without a reason.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from curate.records import BadRecord, Record

__all__ = ["Decision", "Pipeline", "Rejected", "Stage", "StageStats"]

EXAMPLES_PER_STAGE = 3
INPUT_STAGE = "input"  # lines that are not records, and ids seen before


@dataclass(frozen=True)
class Decision:
    """What a stage did to a record: kept it as is, changed its text, or removed it."""

    action: Literal["keep", "edit", "remove"]
    detail: str = ""


KEEP = Decision("keep")


class Stage(Protocol):
    name: str

    def __call__(self, record: Record) -> Decision: ...


@dataclass(frozen=True)
class Rejected:
    """A removed record: its id, the stage that removed it and why."""

    id: str
    stage: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "stage": self.stage, "detail": self.detail}


@dataclass
class StageStats:
    removed: int = 0
    edited: int = 0
    seconds: float = 0.0
    examples: list[dict[str, str]] = field(default_factory=list)

    def note(self, record_id: str, decision: Decision) -> None:
        if decision.action == "remove":
            self.removed += 1
        elif decision.action == "edit":
            self.edited += 1
        if len(self.examples) < EXAMPLES_PER_STAGE:
            self.examples.append(
                {"id": record_id, "action": decision.action, "detail": decision.detail}
            )


class Pipeline:
    """Run `stages` in order over records; iterate to get kept records or `Rejected`s."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        self.stats: dict[str, StageStats] = {INPUT_STAGE: StageStats()}
        self.stats.update({stage.name: StageStats() for stage in stages})
        self.records_in = 0
        self.kept = 0
        self.seconds = 0.0
        self._ids: set[str] = set()

    def run(self, records: Iterable[Record | BadRecord]) -> Iterator[Record | Rejected]:
        started = time.perf_counter()
        for item in records:
            self.records_in += 1
            outcome = self._one(item)
            if isinstance(outcome, Record):
                self.kept += 1
            yield outcome
        self.seconds += time.perf_counter() - started

    def _one(self, item: Record | BadRecord) -> Record | Rejected:
        if isinstance(item, BadRecord):
            return self._reject(INPUT_STAGE, item.id, Decision("remove", item.reason))
        if item.id in self._ids:
            # Two records under one id could not both be told apart in the output.
            return self._reject(INPUT_STAGE, item.id, Decision("remove", "id seen before"))
        self._ids.add(item.id)
        for stage in self.stages:
            started = time.perf_counter()
            decision = stage(item)
            stats = self.stats[stage.name]
            stats.seconds += time.perf_counter() - started
            if decision.action == "remove":
                return self._reject(stage.name, item.id, decision)
            if decision.action == "edit":
                stats.note(item.id, decision)
        return item

    def _reject(self, stage: str, record_id: str, decision: Decision) -> Rejected:
        self.stats[stage].note(record_id, decision)
        return Rejected(record_id, stage, decision.detail)

    def report(self) -> dict[str, Any]:
        """Counts in and out, and per stage: removed, edited, seconds, a few examples."""
        return {
            "records_in": self.records_in,
            "kept": self.kept,
            "removed": self.records_in - self.kept,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_in / self.seconds, 1)
            if self.seconds
            else None,
            "stages": {
                name: {
                    "removed": stats.removed,
                    "edited": stats.edited,
                    "seconds": round(stats.seconds, 3),
                    "examples": stats.examples,
                }
                for name, stats in self.stats.items()
            },
        }
