"""The stages by name, their order, and one call that curates records held in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from curate.dedup import ExactDuplicates, NearDuplicates, NearSettings
from curate.language import LanguageFilter, LanguageSettings
from curate.pipeline import Pipeline, Rejected, Stage
from curate.quality import QualityFilter, QualityRules
from curate.records import Record
from curate.redaction import PiiRedaction

__all__ = ["STAGE_ORDER", "CurationConfig", "CurationResult", "build_pipeline", "curate_records"]

# Cheap checks first; language before quality, whose stop-word rule is English only;
# near-duplicates among records that passed, so the LSH index holds only kept ones;
# PII last, on what is kept.
STAGE_ORDER = ("exact_dedup", "language", "quality", "near_dedup", "pii")


@dataclass(frozen=True)
class CurationConfig:
    """Which stages run (in `STAGE_ORDER`) and the settings of each."""

    stages: tuple[str, ...] = STAGE_ORDER
    near: NearSettings = field(default_factory=NearSettings)
    language: LanguageSettings = field(default_factory=LanguageSettings)
    quality: QualityRules = field(default_factory=QualityRules)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.stages) - set(STAGE_ORDER))
        if unknown:
            raise ValueError(f"unknown stages {unknown}; the stages are {list(STAGE_ORDER)}")


def build_pipeline(config: CurationConfig | None = None) -> Pipeline:
    """A pipeline of the configured stages, in `STAGE_ORDER` whatever order they were named."""
    config = config or CurationConfig()
    makers: dict[str, Callable[[], Stage]] = {
        "exact_dedup": ExactDuplicates,
        "language": lambda: LanguageFilter(config.language),
        "quality": lambda: QualityFilter(config.quality),
        "near_dedup": lambda: NearDuplicates(config.near),
        "pii": PiiRedaction,
    }
    stages: list[Stage] = [makers[name]() for name in STAGE_ORDER if name in config.stages]
    return Pipeline(stages)


@dataclass
class CurationResult:
    kept: list[Record]
    rejected: list[Rejected]
    report: dict[str, Any]


def curate_records(
    records: Iterable[Record], config: CurationConfig | None = None
) -> CurationResult:
    """Curate records held in memory: the kept ones (ids and order kept), the removed, the report.

    Callers that ingest or build corpora use this; the CLI streams through
    `build_pipeline` instead.
    """
    pipeline = build_pipeline(config)
    kept: list[Record] = []
    rejected: list[Rejected] = []
    for outcome in pipeline.run(records):
        if isinstance(outcome, Record):
            kept.append(outcome)
        else:
            rejected.append(outcome)
    return CurationResult(kept, rejected, pipeline.report())
