"""A collection: documents, their chunks, and the dense and sparse indexes over them.

Readers take `collection.snapshot` (one attribute read) and work on it without
locks; a snapshot is never mutated. Writers (ingest, delete) serialise on the
collection's lock, append the new rows to the indexes (rows a snapshot already
sees are never touched), persist one segment (`rag_svc.store`), and only then
publish the next snapshot: concurrent searches see the old state or the new,
never a mix, and a failed write publishes nothing. A deleted or replaced
document's chunks keep their rows, hidden by the snapshot's `alive` mask,
until the collection is next loaded (which indexes live rows only).
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.contracts.rag import DuplicateDocument
from rag_svc.dedup import SignatureBands, best_match
from rag_svc.indexes import DenseIndex, GrowableRows, SparseIndex, bm25_tokens
from rag_svc.store import SegmentData, SegmentStore, StoredChunk, StoredDocument

__all__ = [
    "Collection",
    "CommitResult",
    "EmbeddedBackend",
    "IndexConfig",
    "PreparedDocument",
    "Snapshot",
]


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
    """One consistent state of a collection: what a search reads."""

    generation: int
    documents: dict[str, StoredDocument]
    chunks: list[StoredChunk]  # every row, live or not
    alive: np.ndarray  # (len(chunks),) bool: rows of live documents
    dense: DenseIndex
    sparse: SparseIndex
    # Row of each live document's MinHash signature in `signatures` (rows only get appended).
    signature_rows: dict[str, int]
    signatures: GrowableRows
    signature_ids: list[str]  # the document of each signature row, live or not
    signature_alive: np.ndarray  # (len(signature_ids),) bool
    # Rows of each live document's chunks, in order.
    document_rows: dict[str, range]
    # The LSH bands of `signatures`, shared with the snapshots before this one.
    signature_bands: SignatureBands

    @property
    def live_chunks(self) -> int:
        return int(self.alive.sum())

    # --- rag_svc.storage.SearchView ---------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.chunks)

    def chunk(self, row: int) -> StoredChunk:
        return self.chunks[row]

    def document(self, document_id: str) -> StoredDocument | None:
        return self.documents.get(document_id)

    def mask(self, allowed: np.ndarray | None) -> np.ndarray:
        """Live rows, narrowed by `allowed` (a filter's rows) when given."""
        return self.alive if allowed is None else self.alive & allowed

    def dense_search(
        self, vector: np.ndarray, n: int, allowed: np.ndarray
    ) -> list[tuple[int, float]]:
        return self.dense.search(vector, n, allowed)

    def keyword_search(
        self, tokens: list[str], n: int, allowed: np.ndarray
    ) -> list[tuple[int, float]]:
        return self.sparse.search(tokens, n, self.alive, allowed)

    def nearest_document(self, signature: np.ndarray, excluding: set[str]) -> tuple[str, float]:
        """The closest live document (not in `excluding`) among those sharing a band with
        `signature`, and the similarity; ("", 0.0) when there is none.

        A document at the duplicate threshold or above shares a band but for a chance
        of at most `rag_svc.dedup.MAX_MISS`; one far below it mostly does not, and
        then counts as none.
        """
        count = len(self.signature_ids)
        rows = self.signature_bands.candidates(signature, count)
        usable = self.signature_alive[rows]
        for document_id in excluding:
            if document_id in self.signature_rows:
                usable &= rows != self.signature_rows[document_id]
        rows = rows[usable]
        if rows.size == 0:
            return "", 0.0
        similarity = (self.signatures.view(count)[rows] == signature[None, :]).mean(axis=1)
        best = int(similarity.argmax())
        return self.signature_ids[int(rows[best])], float(similarity[best])


def _empty_snapshot(config: IndexConfig) -> Snapshot:
    return Snapshot(
        0,
        {},
        [],
        np.zeros(0, bool),
        DenseIndex.empty(config.dimensions, config.hnsw_ef_search),
        SparseIndex.empty(),
        {},
        GrowableRows(config.signature_size, np.uint32),
        [],
        np.zeros(0, bool),
        {},
        SignatureBands(config.signature_size, config.dedup_threshold),
    )


def split_duplicates(
    prepared: list[PreparedDocument],
    nearest: Callable[[np.ndarray, set[str]], tuple[str, float]],
    threshold: float,
) -> tuple[list[PreparedDocument], list[DuplicateDocument]]:
    """The documents to store and those that nearly repeat a stored or earlier one.

    `nearest(signature, excluding)` is the backend's closest stored document other
    than the batch's own ids (they are being replaced); earlier documents of this
    batch count too.
    """
    incoming = {p.id for p in prepared}
    accepted: list[PreparedDocument] = []
    duplicates: list[DuplicateDocument] = []
    for doc in prepared:
        match, similarity = nearest(doc.signature, incoming)
        if not match or similarity < threshold:
            batch = np.stack([d.signature for d in accepted]) if accepted else None
            row, similarity = best_match(doc.signature, batch) if batch is not None else (-1, 0.0)
            match = accepted[row].id if row >= 0 and similarity >= threshold else ""
        if match:
            duplicates.append(
                DuplicateDocument(id=doc.id, duplicate_of=match, similarity=round(similarity, 4))
            )
        else:
            accepted.append(doc)
    return accepted, duplicates


@dataclass
class CommitResult:
    ids: list[str]
    chunks: int
    duplicates: list[DuplicateDocument]


class Collection:
    """The embedded backend's collection (a `rag_svc.storage.CollectionStore`)."""

    def __init__(
        self, name: str, store: SegmentStore, config: IndexConfig, snapshot: Snapshot
    ) -> None:
        self.name = name
        self.store = store
        self.config = config
        self.snapshot = snapshot
        self.deleted = False
        self._lock = threading.Lock()

    @property
    def directory(self) -> Path:
        return self.store.directory

    @property
    def created_at(self) -> float:
        return float(self.store.header["created_at"])

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.store.header["metadata"])

    # --- lifecycle --------------------------------------------------------------------

    @classmethod
    def create(
        cls, root: Path, name: str, config: IndexConfig, metadata: dict[str, Any]
    ) -> Collection:
        """Create `root/name` atomically; FileExistsError if it exists."""
        tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        header = {"name": name, "created_at": time.time(), "metadata": metadata}
        store = SegmentStore.create(tmp, header, config.signature_size)
        try:
            tmp.rename(root / name)  # fails when the name exists (a non-empty directory)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise FileExistsError(name) from None
        store.directory = root / name
        return cls(name, store, config, _empty_snapshot(config))

    @classmethod
    def open(cls, directory: Path, config: IndexConfig) -> Collection:
        """Load every segment's live documents into fresh indexes."""
        store, segments = SegmentStore.open(directory, config.signature_size)
        snapshot = _empty_snapshot(config)
        for data, deleted in segments:
            # A later segment may hold a newer version of a document: it replaces this one.
            documents = [d for d in data.documents if d.id not in deleted]
            live = {d.id for d in documents}
            rows = [i for i, c in enumerate(data.chunks) if c.doc_id in live]
            chunks = [data.chunks[i] for i in rows]
            tokens = (
                [data.tokens[i] for i in rows]
                if data.tokens is not None
                else bm25_tokens([c.index_text for c in chunks])
            )
            snapshot = _appended(
                snapshot,
                config,
                set(snapshot.documents) & live,
                documents,
                chunks,
                data.vectors[rows],
                tokens,
            )
        collection = cls(str(store.header["name"]), store, config, snapshot)
        return collection

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
            self.store.directory = target

    def destroy(self, trash: Path) -> None:
        """Remove the collection from disk: one rename, then the slow delete."""
        with self._lock:
            self.deleted = True
            target = trash / f".trash-{self.name}-{uuid.uuid4().hex[:8]}"
            self.directory.rename(target)
        shutil.rmtree(target, ignore_errors=True)

    # --- reads ------------------------------------------------------------------------

    def view(self) -> Snapshot:
        return self.snapshot

    def info(self) -> dict[str, Any]:
        snapshot = self.snapshot
        return {
            "name": self.name,
            "documents": len(snapshot.documents),
            "chunks": snapshot.live_chunks,
            "index": snapshot.dense.kind,
            "created_at": int(self.created_at),
            "metadata": self.metadata,
        }

    def document(self, document_id: str) -> StoredDocument | None:
        return self.snapshot.document(document_id)

    def documents(self) -> Mapping[str, StoredDocument]:
        return self.snapshot.documents

    # --- writes -----------------------------------------------------------------------

    def find_duplicate(self, document_id: str, signature: np.ndarray) -> tuple[str, float] | None:
        """The stored document (other than `document_id`) this signature nearly repeats."""
        match, similarity = self.snapshot.nearest_document(signature, {document_id})
        if match and similarity >= self.config.dedup_threshold:
            return match, similarity
        return None

    def commit(self, prepared: list[PreparedDocument]) -> CommitResult:
        """Add `prepared` (replacing documents of the same id), skipping near-duplicates."""
        with self._lock:
            self._check_alive()
            old = self.snapshot
            accepted, duplicates = split_duplicates(
                prepared, old.nearest_document, self.config.dedup_threshold
            )
            if accepted:
                now = time.time()
                documents = [
                    StoredDocument(d.id, d.text, d.metadata, len(d.chunks), now, d.signature)
                    for d in accepted
                ]
                replaced = {d.id for d in accepted if d.id in old.documents}
                segment = SegmentData(
                    documents,
                    [c for d in accepted for c in d.chunks],
                    np.concatenate([d.vectors for d in accepted]).astype(np.float32, copy=False),
                    [t for d in accepted for t in d.tokens],
                )
                name = self.store.commit(segment, self._tombstones(old, replaced))
                documents = [
                    StoredDocument(
                        d.id, d.text, d.metadata, d.chunk_count, d.created_at, d.signature, name
                    )
                    for d in documents
                ]
                self.snapshot = _appended(
                    old,
                    self.config,
                    replaced,
                    documents,
                    segment.chunks,
                    segment.vectors,
                    segment.tokens or [],
                )
            return CommitResult(
                [d.id for d in accepted], sum(len(d.chunks) for d in accepted), duplicates
            )

    def delete_document(self, document_id: str) -> bool:
        with self._lock:
            self._check_alive()
            old = self.snapshot
            if document_id not in old.documents:
                return False
            self.store.commit(None, self._tombstones(old, {document_id}))
            self.snapshot = _appended(old, self.config, {document_id}, [], [], None, [])
            return True

    @staticmethod
    def _tombstones(snapshot: Snapshot, removed: set[str]) -> dict[str, set[str]]:
        by_segment: dict[str, set[str]] = {}
        for document_id in removed:
            by_segment.setdefault(snapshot.documents[document_id].segment, set()).add(document_id)
        return by_segment

    def _check_alive(self) -> None:
        if self.deleted:
            raise KeyError(self.name)


def _appended(
    old: Snapshot,
    config: IndexConfig,
    removed: set[str],
    documents: list[StoredDocument],
    chunks: list[StoredChunk],
    vectors: np.ndarray | None,
    tokens: list[list[str]],
) -> Snapshot:
    """The snapshot after removing `removed` and appending `documents` with their chunks.

    Costs what the removed and appended rows cost, plus copies of the small
    per-snapshot tables (the id maps, the chunk list and the alive mask).
    """
    alive = np.concatenate([old.alive, np.ones(len(chunks), bool)])
    document_rows = dict(old.document_rows)
    signature_rows = dict(old.signature_rows)
    signature_alive = np.concatenate([old.signature_alive, np.ones(len(documents), bool)])
    stored = dict(old.documents)
    for document_id in removed:
        rows = document_rows.pop(document_id)
        alive[rows.start : rows.stop] = False
        signature_alive[signature_rows.pop(document_id)] = False
        stored.pop(document_id)
    dense, sparse, signatures = old.dense, old.sparse, old.signatures
    bands = old.signature_bands
    signature_count = len(old.signature_ids)
    if documents:
        dense = dense.appended(
            vectors if vectors is not None else np.zeros((0, config.dimensions), np.float32),
            hnsw_threshold=config.hnsw_threshold,
            hnsw_m=config.hnsw_m,
        )
        sparse = sparse.appended(tokens)
        new_signatures = np.stack([d.signature for d in documents])
        grown = signatures.appended(signature_count, new_signatures)
        if grown is not signatures or bands.count != signature_count:
            # A fork of an older snapshot: its rows get bands of their own.
            bands = SignatureBands(config.signature_size, config.dedup_threshold)
            bands.add(grown.view(signature_count))
        bands.add(new_signatures)
        signatures = grown
        row = len(old.chunks)
        for index, document in enumerate(documents):
            stored[document.id] = document
            document_rows[document.id] = range(row, row + document.chunk_count)
            signature_rows[document.id] = signature_count + index
            row += document.chunk_count
    return Snapshot(
        old.generation + 1,
        stored,
        old.chunks + chunks if chunks else old.chunks,
        alive,
        dense,
        sparse,
        signature_rows,
        signatures,
        old.signature_ids + [d.id for d in documents] if documents else old.signature_ids,
        signature_alive,
        document_rows,
        bands,
    )


class EmbeddedBackend:
    """Collections as directories of segments (a `rag_svc.storage.StorageBackend`)."""

    def create(
        self, root: Path, name: str, config: IndexConfig, metadata: dict[str, Any]
    ) -> Collection:
        return Collection.create(root, name, config, metadata)

    def open(self, directory: Path, config: IndexConfig) -> Collection:
        return Collection.open(directory, config)
