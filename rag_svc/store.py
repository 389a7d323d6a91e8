"""A collection on disk: immutable generations and an atomically replaced pointer.

    <collections>/<name>/CURRENT          "gen-00000007"  (written by rename)
    <collections>/<name>/gen-00000007/    manifest.json, documents.jsonl, chunks.jsonl,
                                          vectors.npy, signatures.npy, dense.faiss, bm25/

A commit writes a whole new generation into a temporary directory, fsyncs it,
renames it into place, and only then points CURRENT at it; older generations
are deleted afterwards. A crash at any step leaves CURRENT naming a complete
generation, and leftovers are swept on the next load.
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

__all__ = [
    "GenerationData",
    "StoredChunk",
    "StoredDocument",
    "atomic_write_bytes",
    "read_generation",
    "write_generation",
]

CURRENT = "CURRENT"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StoredDocument:
    id: str
    text: str
    metadata: dict[str, Any]
    chunk_count: int
    created_at: float
    signature: np.ndarray = field(repr=False, compare=False)


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
class GenerationData:
    """What one generation holds; indexes are saved by the callbacks that own them."""

    generation: int
    manifest: dict[str, Any]
    documents: list[StoredDocument]
    chunks: list[StoredChunk]
    vectors: np.ndarray  # (chunks, D) float32
    directory: Path | None = None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new bytes, never a mix."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _generation_name(generation: int) -> str:
    return f"gen-{generation:08d}"


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False))
            f.write("\n")


def write_generation(
    collection_dir: Path,
    data: GenerationData,
    save_indexes: list[tuple[str, Any]],
    signatures: np.ndarray,
) -> Path:
    """Write `data` as the collection's newest generation and point CURRENT at it.

    `save_indexes` holds (relative path, saver) pairs; each saver writes its
    index to the path it is given (a file or a directory).
    """
    name = _generation_name(data.generation)
    tmp = collection_dir / f"{name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    manifest = {**data.manifest, "format": FORMAT_VERSION, "generation": data.generation}
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    _write_jsonl(
        tmp / "documents.jsonl",
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
    _write_jsonl(
        tmp / "chunks.jsonl",
        [
            {"chunk_id": c.chunk_id, "doc_id": c.doc_id, "text": c.text, "metadata": c.metadata}
            | ({"index_text": c.index_text} if c.index_text != c.text else {})
            for c in data.chunks
        ],
    )
    np.save(tmp / "vectors.npy", data.vectors)
    np.save(tmp / "signatures.npy", signatures)
    for relative, saver in save_indexes:
        saver(tmp / relative)
    for root, _, files in os.walk(tmp):
        for filename in files:
            with open(os.path.join(root, filename), "rb+") as f:
                os.fsync(f.fileno())
        _fsync_dir(Path(root))
    final = collection_dir / name
    os.rename(tmp, final)
    _fsync_dir(collection_dir)
    atomic_write_bytes(collection_dir / CURRENT, name.encode())
    _sweep(collection_dir, keep=name)
    return final


def _sweep(collection_dir: Path, keep: str) -> None:
    """Delete every generation (finished or half-written) but `keep`."""
    for entry in collection_dir.iterdir():
        if entry.name.startswith("gen-") and entry.name != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        elif entry.name.startswith(f".{CURRENT}.") and entry.name.endswith(".tmp"):
            entry.unlink(missing_ok=True)


def read_generation(collection_dir: Path) -> GenerationData:
    """The generation CURRENT names; leftovers of interrupted commits are removed."""
    name = (collection_dir / CURRENT).read_text().strip()
    directory = collection_dir / name
    _sweep(collection_dir, keep=name)
    manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))
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
                )
            )
    chunks = []
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
    vectors = np.load(directory / "vectors.npy")
    if vectors.shape[0] != len(chunks) or signatures.shape[0] != len(documents):
        raise ValueError(f"{directory}: chunk, vector and document counts disagree")
    return GenerationData(
        int(manifest["generation"]), manifest, documents, chunks, vectors, directory
    )
