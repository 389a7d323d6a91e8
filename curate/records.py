"""Records to curate and where they come from: a JSONL file, a folder of text files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BadRecord", "Record", "read_folder", "read_jsonl"]


@dataclass
class Record:
    """One document: its id, its text, the other fields it came with, what stages learnt."""

    id: str
    text: str
    fields: dict[str, Any] = field(default_factory=dict)
    # Set by the language stage (ISO 639-1, e.g. "en"); the quality stage's stop-word
    # rule is English and only applies to English or undetected text.
    language: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.fields, "id": self.id, "text": self.text}


@dataclass(frozen=True)
class BadRecord:
    """An input line that is not a record: the CLI reports it as removed by `input`."""

    id: str
    reason: str


def read_jsonl(path: Path) -> Iterator[Record | BadRecord]:
    """Records of a JSONL file, one line at a time (the file is never held whole)."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            yield parse_line(line, number)


def parse_line(line: str, number: int) -> Record | BadRecord:
    where = f"line {number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        return BadRecord(where, f"not JSON: {exc.msg}")
    if not isinstance(data, dict):
        return BadRecord(where, "not a JSON object")
    record_id, text = data.pop("id", None), data.pop("text", None)
    if not isinstance(record_id, str | int) or isinstance(record_id, bool) or record_id == "":
        return BadRecord(where, "no `id` (a non-empty string or an integer)")
    if not isinstance(text, str):
        return BadRecord(str(record_id), f"{where}: no `text` string")
    return Record(str(record_id), text, data)


def read_folder(root: Path) -> Iterator[Record | BadRecord]:
    """Files under `root` in path order; a record's id is its path relative to `root`.

    A file that is not UTF-8 text comes back as a `BadRecord`, so it is reported, not skipped.
    """
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        record_id = path.relative_to(root).as_posix()
        try:
            yield Record(record_id, path.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            yield BadRecord(record_id, "not UTF-8 text")
