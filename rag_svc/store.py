"""A collection on disk: immutable segments, one per commit, listed by a MANIFEST.

    <collection>/MANIFEST              {"format": 2, "name", "created_at", "metadata",
                                        "next_segment", "segments": [{"name", "deleted"}]}
    <collection>/seg-00000007/         documents.jsonl, chunks.jsonl, vectors.npy, signatures.npy

An ingest writes only its own documents: a new segment is written into a
temporary directory, fsynced and renamed into place, and only then does a new
MANIFEST (written by rename) list it. A deletion or a replacement adds the
document's id to its old segment's `deleted` list in the MANIFEST; nothing
else is rewritten. A crash at any step leaves the MANIFEST naming complete
segments only; segments it does not name are leftovers, swept on the next load.

The first format (a whole `gen-NNNNNNNN/` generation per commit, named by
`CURRENT`) is read as a single segment and converted on load.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.files import atomic_write_bytes, fsync_dir

__all__ = [
    "SegmentData",
    "SegmentStore",
    "StoredChunk",
    "StoredDocument",
]

MANIFEST = "MANIFEST"
FORMAT_VERSION = 2
_LEGACY_CURRENT = "CURRENT"


@dataclass(frozen=True)
class StoredDocument:
    id: str
    text: str
    metadata: dict[str, Any]
    chunk_count: int
    created_at: float
    signature: np.ndarray = field(repr=False, compare=False)
    # The segment that holds the document ("" until it is committed).
    segment: str = ""


@dataclass(frozen=True)
class StoredChunk:
    chunk_id: str
    doc_id: str
    text: str
    # The document's metadata plus the chunk's own: position, char_start, char_end, tokens.
    metadata: dict[str, Any]
    # What the retrievers see: the text behind the document title, when there is one.
    index_text: str


@dataclass(frozen=True)
class SegmentData:
    """What one segment holds: documents, their chunks, one vector and BM25 tokens per chunk."""

    documents: list[StoredDocument]
    chunks: list[StoredChunk]
    vectors: np.ndarray  # (chunks, D) float32
    tokens: list[list[str]] | None  # None: not stored (a converted first-format collection)
    name: str = ""


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")


def _write_segment(directory: Path, data: SegmentData, signature_size: int) -> None:
    directory.mkdir(parents=True)
    _write_jsonl(
        directory / "documents.jsonl",
        [
            {
                "id": d.id,
                "text": d.text,
                "metadata": d.metadata,
                "chunk_count": d.chunk_count,
                "created_at": d.created_at,
            }
            for d in data.documents
        ],
    )
    tokens: list[list[str] | None] = (
        list(data.tokens) if data.tokens is not None else [None] * len(data.chunks)
    )
    _write_jsonl(
        directory / "chunks.jsonl",
        [
            {"chunk_id": c.chunk_id, "doc_id": c.doc_id, "text": c.text, "metadata": c.metadata}
            | ({"index_text": c.index_text} if c.index_text != c.text else {})
            | ({"tokens": t} if t is not None else {})
            for c, t in zip(data.chunks, tokens, strict=True)
        ],
    )
    np.save(directory / "vectors.npy", data.vectors)
    signatures = (
        np.stack([d.signature for d in data.documents])
        if data.documents
        else np.zeros((0, signature_size), np.uint32)
    )
    np.save(directory / "signatures.npy", signatures)
    for name in ("documents.jsonl", "chunks.jsonl", "vectors.npy", "signatures.npy"):
        with open(directory / name, "rb+") as f:
            os.fsync(f.fileno())
    fsync_dir(directory)


def _read_segment(directory: Path) -> SegmentData:
    signatures = np.load(directory / "signatures.npy")
    documents = []
    with (directory / "documents.jsonl").open(encoding="utf-8") as f:
        for row, line in enumerate(f):
            d = json.loads(line)
            documents.append(
                StoredDocument(
                    d["id"],
                    d["text"],
                    d["metadata"],
                    d["chunk_count"],
                    d["created_at"],
                    signatures[row],
                    directory.name,
                )
            )
    chunks, tokens = [], []
    with (directory / "chunks.jsonl").open(encoding="utf-8") as f:
        for line in f:
            c = json.loads(line)
            chunks.append(
                StoredChunk(
                    c["chunk_id"],
                    c["doc_id"],
                    c["text"],
                    c["metadata"],
                    c.get("index_text", c["text"]),
                )
            )
            tokens.append(c.get("tokens"))
    vectors = np.load(directory / "vectors.npy").astype(np.float32, copy=False)
    if vectors.shape[0] != len(chunks) or signatures.shape[0] != len(documents):
        raise ValueError(f"{directory}: chunk, vector and document counts disagree")
    complete = all(t is not None for t in tokens)
    return SegmentData(documents, chunks, vectors, tokens if complete else None, directory.name)


class SegmentStore:
    """The segments and MANIFEST of one collection directory; writers call it under their lock."""

    def __init__(self, directory: Path, header: dict[str, Any], signature_size: int) -> None:
        self.directory = directory
        self.header = header  # name, created_at, metadata
        self.signature_size = signature_size
        self._segments: list[dict[str, Any]] = []
        self._next = 1

    @classmethod
    def create(cls, directory: Path, header: dict[str, Any], signature_size: int) -> SegmentStore:
        store = cls(directory, header, signature_size)
        store._write_manifest()
        return store

    @classmethod
    def open(
        cls, directory: Path, signature_size: int
    ) -> tuple[SegmentStore, list[tuple[SegmentData, set[str]]]]:
        """The store and its segments, each with the ids it no longer holds, in commit order."""
        if not (directory / MANIFEST).is_file() and (directory / _LEGACY_CURRENT).is_file():
            _convert_first_format(directory)
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
        header = {k: manifest[k] for k in ("name", "created_at", "metadata")}
        store = cls(directory, header, signature_size)
        store._segments = [dict(s) for s in manifest["segments"]]
        store._next = int(manifest["next_segment"])
        store._sweep()
        segments = [
            (_read_segment(directory / s["name"]), set(s["deleted"])) for s in store._segments
        ]
        return store, segments

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def commit(self, data: SegmentData | None, deleted: dict[str, set[str]]) -> str:
        """Persist a new segment (if any) and the ids that segments no longer hold; its name."""
        name = ""
        segments = [dict(s) for s in self._segments]
        for entry in segments:
            gone = deleted.get(entry["name"])
            if gone:
                entry["deleted"] = sorted(set(entry["deleted"]) | gone)
        next_segment = self._next
        if data is not None:
            name = f"seg-{next_segment:08d}"
            tmp = self.directory / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
            _write_segment(tmp, data, self.signature_size)
            os.rename(tmp, self.directory / name)
            fsync_dir(self.directory)
            segments.append({"name": name, "deleted": []})
            next_segment += 1
        # Segments whose every document is gone are dropped from the MANIFEST, then deleted.
        emptied = [s["name"] for s in segments if s["name"] in deleted and self._empty(s)]
        segments = [s for s in segments if s["name"] not in emptied]
        self._write_manifest(segments, next_segment)
        self._segments, self._next = segments, next_segment
        for dead in emptied:
            shutil.rmtree(self.directory / dead, ignore_errors=True)
        return name

    def _empty(self, entry: dict[str, Any]) -> bool:
        path = self.directory / entry["name"] / "documents.jsonl"
        with path.open(encoding="utf-8") as f:
            ids = {json.loads(line)["id"] for line in f}
        return ids <= set(entry["deleted"])

    def _write_manifest(
        self, segments: list[dict[str, Any]] | None = None, next_segment: int | None = None
    ) -> None:
        manifest = {
            "format": FORMAT_VERSION,
            **self.header,
            "next_segment": self._next if next_segment is None else next_segment,
            "segments": self._segments if segments is None else segments,
        }
        atomic_write_bytes(self.directory / MANIFEST, json.dumps(manifest, indent=1).encode())

    def _sweep(self) -> None:
        """Delete what the MANIFEST does not name: interrupted commits, temporary files."""
        keep = {s["name"] for s in self._segments} | {MANIFEST}
        for entry in self.directory.iterdir():
            if entry.name in keep:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            elif entry.name.startswith("."):
                entry.unlink(missing_ok=True)


def _convert_first_format(directory: Path) -> None:
    """A `CURRENT` + `gen-N/` collection becomes one segment and a MANIFEST (crash-safe)."""
    generation = (directory / _LEGACY_CURRENT).read_text().strip()
    old = json.loads((directory / generation / "manifest.json").read_text(encoding="utf-8"))
    segment = directory / "seg-00000001"
    if not segment.exists():
        shutil.copytree(directory / generation, directory / ".seg-00000001.tmp")
        os.rename(directory / ".seg-00000001.tmp", segment)
        fsync_dir(directory)
    manifest = {
        "format": FORMAT_VERSION,
        "name": old["name"],
        "created_at": old["created_at"],
        "metadata": old.get("metadata", {}),
        "next_segment": 2,
        "segments": [{"name": segment.name, "deleted": []}],
    }
    atomic_write_bytes(directory / MANIFEST, json.dumps(manifest, indent=1).encode())
    (directory / _LEGACY_CURRENT).unlink()
