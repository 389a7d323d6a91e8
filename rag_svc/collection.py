"""A collection: documents, their chunks, and the dense and sparse indexes over them.

Readers take `collection.snapshot` (one attribute read) and work on it without
locks; a snapshot is never mutated. Writers (ingest, delete) serialise on the
collection's lock, build the next snapshot from the current one, persist it,
and only then publish it: concurrent searches see the old state or the new,
never a mix, and a failed write publishes nothing.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.contracts.rag import DuplicateDocument
from rag_svc.dedup import best_match
from rag_svc.indexes import DenseIndex, SparseIndex, bm25_tokens
from rag_svc.store import (
    GenerationData,
    StoredChunk,
    StoredDocument,
    read_generation,
    write_generation,
)

__all__ = ["Collection", "IndexConfig", "PreparedDocument", "Snapshot"]


@dataclass(frozen=True)
class IndexConfig:
    dimensions: int
    signature_size: int
    dedup_threshold: float
    hnsw_threshold: int
    hnsw_m: int
    hnsw_ef_search: int


@dataclass(frozen=True)
class PreparedDocument:
    """A document chunked, embedded and signed, ready to commit."""

    id: str
    text: str
    metadata: dict[str, Any]
    signature: np.ndarray
    chunks: list[StoredChunk]
    vectors: np.ndarray  # (len(chunks), D)
    tokens: list[list[str]]  # BM25 tokens per chunk


@dataclass(frozen=True)
class Snapshot:
    generation: int
    documents: dict[str, StoredDocument]
    chunks: list[StoredChunk]
    dense: DenseIndex
    sparse: SparseIndex
    # BM25 tokens per chunk, kept to rebuild BM25 on the next commit (None: not yet made).
    tokens: list[list[str]] | None = field(default=None, repr=False)

    def signatures(self, size: int) -> np.ndarray:
        if not self.documents:
            return np.zeros((0, size), dtype=np.uint32)
        return np.stack([d.signature for d in self.documents.values()])


@dataclass
class CommitResult:
    ids: list[str]
    chunks: int
    duplicates: list[DuplicateDocument]


class Collection:
    def __init__(
        self,
        name: str,
        directory: Path,
        config: IndexConfig,
        snapshot: Snapshot,
        created_at: float,
        metadata: dict[str, Any],
    ) -> None:
        self.name = name
        self.directory = directory
        self.config = config
        self.snapshot = snapshot
        self.created_at = created_at
        self.metadata = metadata
        self.deleted = False
        self._lock = threading.Lock()

    # --- lifecycle --------------------------------------------------------------------

    @classmethod
    def create(
        cls, root: Path, name: str, config: IndexConfig, metadata: dict[str, Any]
    ) -> Collection:
        """Create `root/name` atomically; FileExistsError if it exists."""
        tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        created_at = time.time()
        snapshot = Snapshot(
            0,
            {},
            [],
            DenseIndex.build(
                np.zeros((0, config.dimensions), np.float32),
                hnsw_threshold=config.hnsw_threshold,
                hnsw_m=config.hnsw_m,
                ef_search=config.hnsw_ef_search,
            ),
            SparseIndex(None, 0),
            [],
        )
        collection = cls(name, tmp, config, snapshot, created_at, metadata)
        collection._persist(snapshot)
        try:
            tmp.rename(root / name)  # fails when the name exists (a non-empty directory)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(name) from None
        collection.directory = root / name
        return collection

    @classmethod
    def open(cls, directory: Path, config: IndexConfig) -> Collection:
        data = read_generation(directory)
        vectors = data.vectors.astype(np.float32, copy=False)
        manifest = data.manifest
        assert data.directory is not None
        dense = DenseIndex.load(data.directory / "dense.faiss", vectors, config.hnsw_ef_search)
        sparse = SparseIndex.load(data.directory / "bm25", len(data.chunks))
        snapshot = Snapshot(
            data.generation, {d.id: d for d in data.documents}, data.chunks, dense, sparse
        )
        return cls(
            manifest["name"],
            directory,
            config,
            snapshot,
            float(manifest["created_at"]),
            dict(manifest.get("metadata", {})),
        )

    def move(self, target: Path) -> None:
        """Rename the collection's directory to `target` (FileExistsError if it exists).

        Taken under the write lock, so no commit writes into the old path meanwhile.
        """
        with self._lock:
            self._check_alive()
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise FileExistsError(str(target))
            self.directory.rename(target)
            self.directory = target

    def destroy(self, trash: Path) -> None:
        """Remove the collection from disk: one rename, then the slow delete."""
        with self._lock:
            self.deleted = True
            target = trash / f".trash-{self.name}-{uuid.uuid4().hex[:8]}"
            self.directory.rename(target)
        shutil.rmtree(target, ignore_errors=True)

    # --- reads ------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        snapshot = self.snapshot
        return {
            "name": self.name,
            "documents": len(snapshot.documents),
            "chunks": len(snapshot.chunks),
            "index": snapshot.dense.kind,
            "created_at": int(self.created_at),
            "metadata": self.metadata,
        }

    # --- writes -----------------------------------------------------------------------

    def find_duplicate(self, document_id: str, signature: np.ndarray) -> tuple[str, float] | None:
        """The stored document (other than `document_id`) this signature nearly repeats."""
        snapshot = self.snapshot
        ids = list(snapshot.documents)
        signatures = snapshot.signatures(self.config.signature_size)
        if document_id in snapshot.documents:
            keep = [i for i, d in enumerate(ids) if d != document_id]
            ids = [ids[i] for i in keep]
            signatures = signatures[keep]
        row, similarity = best_match(signature, signatures)
        if row >= 0 and similarity >= self.config.dedup_threshold:
            return ids[row], similarity
        return None

    def commit(self, prepared: list[PreparedDocument]) -> CommitResult:
        """Add `prepared` (replacing documents of the same id), skipping near-duplicates."""
        with self._lock:
            self._check_alive()
            old = self.snapshot
            incoming = {p.id for p in prepared}
            others = [d for d in old.documents.values() if d.id not in incoming]
            known_ids = [d.id for d in others]
            known = [d.signature for d in others]
            accepted: list[PreparedDocument] = []
            duplicates: list[DuplicateDocument] = []
            threshold = self.config.dedup_threshold
            for doc in prepared:
                matrix = (
                    np.stack(known)
                    if known
                    else np.zeros((0, self.config.signature_size), np.uint32)
                )
                row, similarity = best_match(doc.signature, matrix)
                if row >= 0 and similarity >= threshold:
                    duplicates.append(
                        DuplicateDocument(
                            id=doc.id, duplicate_of=known_ids[row], similarity=round(similarity, 4)
                        )
                    )
                    continue
                accepted.append(doc)
                known.append(doc.signature)
                known_ids.append(doc.id)
            replaced = {d.id for d in accepted if d.id in old.documents}
            if accepted:
                self._publish(self._next_snapshot(old, replaced, accepted))
            return CommitResult(
                [d.id for d in accepted], sum(len(d.chunks) for d in accepted), duplicates
            )

    def delete_document(self, document_id: str) -> bool:
        with self._lock:
            self._check_alive()
            old = self.snapshot
            if document_id not in old.documents:
                return False
            self._publish(self._next_snapshot(old, {document_id}, []))
            return True

    def _check_alive(self) -> None:
        if self.deleted:
            raise KeyError(self.name)

    def _next_snapshot(
        self, old: Snapshot, removed: set[str], added: list[PreparedDocument]
    ) -> Snapshot:
        config = self.config
        old_tokens = old.tokens
        if old_tokens is None:
            old_tokens = bm25_tokens([c.index_text for c in old.chunks])
        new_vectors = (
            np.concatenate([d.vectors for d in added])
            if added
            else np.zeros((0, config.dimensions), np.float32)
        )
        new_chunks = [c for d in added for c in d.chunks]
        new_tokens = [t for d in added for t in d.tokens]
        if removed:
            keep = [i for i, c in enumerate(old.chunks) if c.doc_id not in removed]
            vectors = np.concatenate([old.dense.vectors[keep], new_vectors])
            dense = DenseIndex.build(
                vectors,
                hnsw_threshold=config.hnsw_threshold,
                hnsw_m=config.hnsw_m,
                ef_search=config.hnsw_ef_search,
            )
            chunks = [old.chunks[i] for i in keep] + new_chunks
            tokens = [old_tokens[i] for i in keep] + new_tokens
        else:
            dense = old.dense.extended(
                new_vectors, hnsw_threshold=config.hnsw_threshold, hnsw_m=config.hnsw_m
            )
            chunks = old.chunks + new_chunks
            tokens = old_tokens + new_tokens
        documents = {k: v for k, v in old.documents.items() if k not in removed}
        now = time.time()
        for d in added:
            documents.pop(d.id, None)
            documents[d.id] = StoredDocument(
                d.id, d.text, d.metadata, len(d.chunks), now, d.signature
            )
        return Snapshot(
            old.generation + 1, documents, chunks, dense, SparseIndex.build(tokens), tokens
        )

    def _publish(self, snapshot: Snapshot) -> None:
        self._persist(snapshot)
        self.snapshot = snapshot

    def _persist(self, snapshot: Snapshot) -> None:
        manifest = {
            "name": self.name,
            "created_at": self.created_at,
            "metadata": self.metadata,
            "dimensions": self.config.dimensions,
            "documents": len(snapshot.documents),
            "chunks": len(snapshot.chunks),
            "index": snapshot.dense.kind,
        }
        data = GenerationData(
            snapshot.generation,
            manifest,
            list(snapshot.documents.values()),
            snapshot.chunks,
            snapshot.dense.vectors,
        )
        write_generation(
            self.directory,
            data,
            [("dense.faiss", snapshot.dense.save), ("bm25", snapshot.sparse.save)],
            snapshot.signatures(self.config.signature_size),
        )
