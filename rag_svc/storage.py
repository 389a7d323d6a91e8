"""The storage seam: what the library and the retriever ask of a collection's backend.

    CollectionStore   one collection: documents in and out, duplicates, lifecycle
      .view() -> SearchView   one consistent state that a search reads, rows included

Two backends implement the two protocols, and a `StorageBackend` opens or
creates their collections (`RAG_STORAGE_BACKEND`): the embedded one
(`rag_svc.collection.Collection`: segments on disk, exact dense search and
BM25 in memory) and Milvus (`rag_svc.backends.milvus`: milvus-lite's file or a
Milvus server). Both share `rag_svc.collection.split_duplicates` for what a
commit keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rag_svc.store import StoredChunk, StoredDocument

if TYPE_CHECKING:
    from rag_svc.collection import CommitResult, IndexConfig, PreparedDocument

__all__ = ["CollectionStore", "SearchView", "StorageBackend"]


class SearchView(Protocol):
    """One state of a collection; rows number its chunks for as long as the view lives."""

    @property
    def row_count(self) -> int: ...

    def chunk(self, row: int) -> StoredChunk: ...

    def document(self, document_id: str) -> StoredDocument | None: ...

    def mask(self, allowed: np.ndarray | None) -> np.ndarray:
        """(row_count,) bool: rows a search may return, narrowed by `allowed` when given."""
        ...

    def dense_search(
        self, vector: np.ndarray, n: int, allowed: np.ndarray
    ) -> list[tuple[int, float]]: ...

    def keyword_search(
        self, tokens: list[str], n: int, allowed: np.ndarray
    ) -> list[tuple[int, float]]: ...


class CollectionStore(Protocol):
    """A collection as the library uses it; every method is thread-safe."""

    name: str
    config: IndexConfig

    def view(self) -> SearchView: ...

    def info(self) -> dict[str, Any]: ...

    def document(self, document_id: str) -> StoredDocument | None: ...

    def documents(self) -> Mapping[str, StoredDocument]:
        """Every document, by id (a read-only view of one state)."""
        ...

    def find_duplicate(
        self, document_id: str, signature: np.ndarray
    ) -> tuple[str, float] | None: ...

    def commit(self, prepared: list[PreparedDocument]) -> CommitResult: ...

    def delete_document(self, document_id: str) -> bool: ...

    def move(self, target: Path) -> None: ...

    def destroy(self, trash: Path) -> None: ...


class StorageBackend(Protocol):
    """Creates and opens collections at a place (a directory, or a prefix in a remote engine)."""

    def create(
        self, root: Path, name: str, config: IndexConfig, metadata: dict[str, Any]
    ) -> CollectionStore: ...

    def open(self, directory: Path, config: IndexConfig) -> CollectionStore: ...
