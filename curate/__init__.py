"""Curation of training and knowledge data: deduplication, quality, language, PII redaction.

`python -m curate` runs the stages over a JSONL file, a folder or a rag collection
(curate/cli.py); `curate_records` runs them over records held in memory.
"""

from curate.records import Record
from curate.stages import STAGE_ORDER, CurationConfig, CurationResult, curate_records

__all__ = ["STAGE_ORDER", "CurationConfig", "CurationResult", "Record", "curate_records"]
