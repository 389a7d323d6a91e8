"""The library: every collection under the data dir, the models they share, ingest and search.

Collections are keyed by `CollectionRef` (name and owner); which caller may
reach which one is decided before the library is called (`rag_svc.access`).

Every method is synchronous and thread-safe; the routes run them in worker
threads. Models load once (`load()`, from the lifespan); until then the
methods that need them raise `ServiceUnavailable`.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.contracts.rag import (
    COLLECTION_NAME_PATTERN,
    DocumentIn,
    DocumentOut,
    DocumentPage,
    IngestResponse,
    SearchRequest,
    SearchResponse,
)
from common.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from common.minilm import MiniLMEmbedder
from rag_svc.chunking import Chunker
from rag_svc.collection import EmbeddedBackend, IndexConfig
from rag_svc.dedup import MinHasher
from rag_svc.filters import FilterError
from rag_svc.ingestion import EmptyDocument, prepare_documents
from rag_svc.layout import CollectionRef, Layout
from rag_svc.reranker import Reranker
from rag_svc.retrieval import Retriever, SearchOptions
from rag_svc.settings import RagSettings
from rag_svc.storage import CollectionStore, StorageBackend
from rag_svc.store import StoredDocument

__all__ = [
    "Library",
    "Models",
    "collection_not_found",
    "storage_backend",
    "validate_collection_name",
]

logger = logging.getLogger("rag_svc.library")

_NAME = re.compile(COLLECTION_NAME_PATTERN)


def validate_collection_name(name: str) -> str:
    # fullmatch: with `match`, '$' would also accept a name that ends in a newline.
    if not _NAME.fullmatch(name):
        raise BadRequest(
            f"Invalid collection name {name!r}: 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit.",
            param="name",
            code="invalid_collection_name",
        )
    return name


def collection_not_found(name: str) -> NotFound:
    """The one answer for a collection that is absent or belongs to another tenant."""
    return NotFound(
        f"Collection {name!r} does not exist; create it with POST /v1/collections.",
        param="name",
        code="collection_not_found",
    )


def _owner(ref: CollectionRef) -> str:
    return "shared" if ref.tenant is None else ref.tenant


def _document_out(ref: CollectionRef, document: StoredDocument) -> DocumentOut:
    return DocumentOut(
        id=document.id,
        collection=ref.name,
        text=document.text,
        metadata=document.metadata,
        chunks=document.chunk_count,
        created_at=int(document.created_at),
    )


def storage_backend(settings: RagSettings) -> StorageBackend:
    """The backend RAG_STORAGE_BACKEND names (pymilvus is imported only when it is chosen)."""
    if settings.storage_backend == "milvus":
        from rag_svc.backends.milvus import MilvusBackend

        return MilvusBackend(settings.milvus_uri or str(settings.data_dir / "rag" / "milvus.db"))
    return EmbeddedBackend()


@dataclass(frozen=True)
class Models:
    embedder: MiniLMEmbedder
    reranker: Reranker
    chunker: Chunker
    minhasher: MinHasher
    retriever: Retriever


class Library:
    """The service's collections and models: create, list, move and delete, ingest, search."""

    def __init__(self, settings: RagSettings, backend: StorageBackend | None = None) -> None:
        self.settings = settings
        self.backend: StorageBackend = backend or storage_backend(settings)
        self.root: Path = settings.data_dir / "rag"
        self.layout = Layout(self.root)
        self.models: Models | None = None
        self._collections: dict[CollectionRef, CollectionStore] = {}
        self._lock = threading.Lock()
        self._minhasher = MinHasher()
        self.index_config = IndexConfig(
            dimensions=MiniLMEmbedder.dimensions,
            signature_size=self._minhasher.permutations,
            dedup_threshold=settings.dedup_threshold,
            hnsw_threshold=settings.hnsw_threshold,
            hnsw_m=settings.hnsw_m,
            hnsw_ef_search=settings.hnsw_ef_search,
        )

    # --- start-up ---------------------------------------------------------------------

    def load(self) -> None:
        """Load the models and open every stored collection (seconds; call once)."""
        started = time.perf_counter()
        s = self.settings
        embedder = MiniLMEmbedder(batch_size=s.embedding_batch_size, dtype=s.embedding_dtype)
        reranker = Reranker(threads=s.reranker_threads)
        self._open_collections()
        self.models = Models(
            embedder=embedder,
            reranker=reranker,
            chunker=Chunker(embedder.tokenizer, s.chunk_tokens, s.chunk_overlap_tokens),
            minhasher=self._minhasher,
            retriever=Retriever(
                embedder,
                reranker,
                SearchOptions(
                    s.fusion_candidates, s.rrf_k, s.rerank_candidates, s.rerank_passage_chars
                ),
            ),
        )
        logger.info(
            "models loaded",
            extra={
                "embedder": embedder.model_name,
                "reranker": reranker.model_name,
                "collections": len(self._collections),
                "seconds": round(time.perf_counter() - started, 2),
            },
        )

    def _open_collections(self) -> None:
        self.layout.migrate_first_version()
        for tenant, namespace in self.layout.namespaces():
            for entry in sorted(namespace.iterdir()):
                if entry.name.startswith("."):
                    # Leftovers of an interrupted create, delete or move.
                    shutil.rmtree(entry, ignore_errors=True)
                    continue
                try:
                    collection = self.backend.open(entry, self.index_config)
                except (OSError, ValueError, KeyError) as exc:
                    logger.error(
                        "collection not loaded", extra={"path": str(entry), "error": str(exc)}
                    )
                    continue
                self._collections[CollectionRef(collection.name, tenant)] = collection

    def require_models(self) -> Models:
        if self.models is None:
            raise ServiceUnavailable(
                "rag_svc is still loading its models; retry in a few seconds.",
                code="models_loading",
                headers={"Retry-After": "5"},
            )
        return self.models

    # --- collections ------------------------------------------------------------------

    def create_collection(self, ref: CollectionRef, metadata: dict[str, Any]) -> dict[str, Any]:
        """Create `ref`; Conflict if it exists, or if a tenant's name is taken by a shared one."""
        validate_collection_name(ref.name)
        self.require_models()
        with self._lock:
            if ref in self._collections:
                raise Conflict(
                    f"Collection {ref.name!r} already exists.",
                    param="name",
                    code="collection_exists",
                )
            # A tenant's new collection never hides a shared one of the same name.
            if not ref.shared and CollectionRef(ref.name, None) in self._collections:
                raise Conflict(
                    f"{ref.name!r} is the name of a shared collection; choose another name.",
                    param="name",
                    code="collection_exists",
                )
            namespace = self.layout.namespace(ref.tenant)
            try:
                collection = self.backend.create(namespace, ref.name, self.index_config, metadata)
            except FileExistsError:
                raise Conflict(
                    f"Collection {ref.name!r} already exists.",
                    param="name",
                    code="collection_exists",
                ) from None
            self._collections[ref] = collection
        logger.info("collection created", extra={"collection": ref.name, "owner": _owner(ref)})
        return self.info(ref)

    def ensure_default_collections(self, tenant: str) -> None:
        """Create the tenant's default collections (RAG_DEFAULT_COLLECTIONS) that are missing."""
        for name in self.settings.default_collections:
            ref = CollectionRef(name, tenant)
            if ref in self._collections:
                continue
            with contextlib.suppress(Conflict):  # created meanwhile by a concurrent call
                self.create_collection(ref, {"created_by": "rag_svc default"})

    def find(self, tenant: str, name: str) -> CollectionRef | None:
        """What `name` means to `tenant`: its own collection first, then a shared one."""
        for ref in (CollectionRef(name, tenant), CollectionRef(name, None)):
            if ref in self._collections:
                return ref
        return None

    def list_collections(self, tenant: str) -> list[dict[str, Any]]:
        """The tenant's own collections and the shared ones its own do not hide, by name."""
        self.require_models()  # collections open with the models: an empty list would lie
        with self._lock:
            visible = [(r, c) for r, c in self._collections.items() if r.tenant == tenant]
            own = {r.name for r, _ in visible}
            visible += [
                (r, c) for r, c in self._collections.items() if r.shared and r.name not in own
            ]
        visible.sort(key=lambda item: item[0].name)
        return [{**c.info(), "shared": r.shared} for r, c in visible]

    def has_collection(self, ref: CollectionRef) -> bool:
        return ref in self._collections

    def collection(self, ref: CollectionRef) -> CollectionStore:
        self.require_models()  # until then a stored collection would read as missing
        collection = self._collections.get(ref)
        if collection is None:
            raise collection_not_found(ref.name)
        return collection

    def info(self, ref: CollectionRef) -> dict[str, Any]:
        return {**self.collection(ref).info(), "shared": ref.shared}

    def delete_collection(self, ref: CollectionRef) -> None:
        with self._lock:
            collection = self.collection(ref)
            del self._collections[ref]
        collection.destroy(self.layout.namespace(ref.tenant))
        logger.info("collection deleted", extra={"collection": ref.name, "owner": _owner(ref)})

    def move_collection(self, ref: CollectionRef, target: CollectionRef) -> dict[str, Any]:
        """Give collection `ref` another owner (shared or a tenant), keeping its data."""
        with self._lock:
            collection = self.collection(ref)
            if target in self._collections:
                raise Conflict(
                    f"Collection {target.name!r} already exists "
                    f"{'as a shared collection' if target.shared else 'for this tenant'}.",
                    param="name",
                    code="collection_exists",
                )
            try:
                collection.move(self.layout.directory(target))
            except KeyError:
                raise collection_not_found(ref.name) from None  # deleted meanwhile
            except FileExistsError:
                # A directory that did not load as a collection (logged at start) is in the way.
                raise Conflict(
                    f"Collection {ref.name!r} cannot move: its new place is taken on disk.",
                    param="name",
                    code="collection_exists",
                ) from None
            del self._collections[ref]
            self._collections[target] = collection
        logger.info(
            "collection moved",
            extra={"collection": ref.name, "owner": _owner(ref), "new_owner": _owner(target)},
        )
        return self.info(target)

    # --- documents --------------------------------------------------------------------

    def ingest(
        self, ref: CollectionRef, documents: list[DocumentIn], redact: bool | None = None
    ) -> IngestResponse:
        models = self.require_models()
        collection = self.collection(ref)
        s = self.settings
        if len(documents) > s.max_documents_per_request:
            raise BadRequest(
                f"At most {s.max_documents_per_request} documents per request "
                f"(got {len(documents)}); split the batch.",
                param="documents",
                code="too_many_documents",
            )
        ids = [d.id for d in documents if d.id is not None]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise BadRequest(
                f"Document id(s) {repeated} appear more than once in the request.",
                param="documents",
                code="duplicate_ids",
            )
        for index, doc in enumerate(documents):
            if len(doc.text) > s.max_document_chars:
                raise BadRequest(
                    f"documents.{index}.text has {len(doc.text)} characters; "
                    f"the limit is {s.max_document_chars}.",
                    param=f"documents.{index}.text",
                    code="document_too_long",
                )
        started = time.perf_counter()
        try:
            batch = prepare_documents(
                documents,
                collection=collection,
                chunker=models.chunker,
                minhasher=models.minhasher,
                embedder=models.embedder,
                redact=s.redact_pii if redact is None else redact,
            )
        except EmptyDocument as exc:
            raise BadRequest(
                str(exc), param=f"documents.{exc.index}.text", code="empty_document"
            ) from None
        try:
            result = collection.commit(batch.documents)
        except KeyError:
            raise NotFound(
                f"Collection {ref.name!r} was deleted during the ingest.",
                code="collection_not_found",
            ) from None
        elapsed = max(time.perf_counter() - started, 1e-9)
        logger.info(
            "documents ingested",
            extra={
                "collection": ref.name,
                "owner": _owner(ref),
                "documents": len(result.ids),
                "chunks": result.chunks,
                "duplicates": len(batch.duplicates) + len(result.duplicates),
                "seconds": round(elapsed, 3),
                "docs_per_s": round(len(documents) / elapsed, 1),
                "chunks_per_s": round(result.chunks / elapsed, 1),
            },
        )
        return IngestResponse(
            ids=result.ids,
            chunks=result.chunks,
            duplicates=batch.duplicates + result.duplicates,
            redactions=batch.redactions,
        )

    def get_document(self, ref: CollectionRef, document_id: str) -> DocumentOut:
        document = self.collection(ref).document(document_id)
        if document is None:
            raise self._document_not_found(ref.name, document_id)
        return _document_out(ref, document)

    def list_documents(self, ref: CollectionRef, after: str | None, limit: int) -> DocumentPage:
        """Up to `limit` documents in id order, starting after the id `after`."""
        documents = self.collection(ref).documents()
        ids = heapq.nsmallest(limit, (i for i in documents if after is None or i > after))
        return DocumentPage(
            documents=[_document_out(ref, documents[i]) for i in ids],
            next_after=ids[-1] if len(ids) == limit else None,
        )

    def delete_document(self, ref: CollectionRef, document_id: str) -> None:
        try:
            deleted = self.collection(ref).delete_document(document_id)
        except KeyError:
            deleted = False
        if not deleted:
            raise self._document_not_found(ref.name, document_id)

    @staticmethod
    def _document_not_found(name: str, document_id: str) -> NotFound:
        return NotFound(
            f"Document {document_id!r} is not in collection {name!r}.",
            param="id",
            code="document_not_found",
        )

    # --- search -----------------------------------------------------------------------

    def search(
        self, ref: CollectionRef, request: SearchRequest, dense_text: str | None = None
    ) -> SearchResponse:
        models = self.require_models()
        collection = self.collection(ref)
        try:
            results = models.retriever.search(
                collection,
                request.query,
                k=request.k,
                mode=request.mode,
                rerank=request.rerank,
                filter=request.filter,
                dense_text=dense_text,
            )
        except FilterError as exc:
            raise BadRequest(str(exc), param="filter", code="invalid_filter") from None
        return SearchResponse(results=results)
