"""The service's core: models, the collections under the data dir, ingest and search.

Every method is synchronous and thread-safe; the routes run them in worker
threads. Models load once (`load()`, from the lifespan); until then the
methods that need them raise `ServiceUnavailable`.
"""

from __future__ import annotations

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
    IngestResponse,
    SearchRequest,
    SearchResponse,
)
from common.errors import BadRequest, Conflict, NotFound, ServiceUnavailable
from common.minilm import MiniLMEmbedder
from rag_svc.chunking import Chunker
from rag_svc.collection import Collection, IndexConfig
from rag_svc.dedup import MinHasher
from rag_svc.filters import FilterError
from rag_svc.ingestion import EmptyDocument, prepare_documents
from rag_svc.reranker import Reranker
from rag_svc.retrieval import Retriever, SearchOptions
from rag_svc.settings import RagSettings

__all__ = ["Models", "RagEngine", "validate_collection_name"]

logger = logging.getLogger("rag_svc.engine")

_NAME = re.compile(COLLECTION_NAME_PATTERN)


def validate_collection_name(name: str) -> str:
    if not _NAME.match(name):
        raise BadRequest(
            f"Invalid collection name {name!r}: 1-64 letters, digits, '_' or '-', "
            "starting with a letter or digit.",
            param="name",
            code="invalid_collection_name",
        )
    return name


@dataclass(frozen=True)
class Models:
    embedder: MiniLMEmbedder
    reranker: Reranker
    chunker: Chunker
    minhasher: MinHasher
    retriever: Retriever


class RagEngine:
    def __init__(self, settings: RagSettings) -> None:
        self.settings = settings
        self.root: Path = settings.data_dir / "rag"
        self.collections_dir = self.root / "collections"
        self.models: Models | None = None
        self._collections: dict[str, Collection] = {}
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
        embedder = MiniLMEmbedder(batch_size=s.embedding_batch_size)
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
                SearchOptions(s.fusion_candidates, s.rrf_k, s.rerank_candidates),
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
        self.collections_dir.mkdir(parents=True, exist_ok=True)
        for entry in sorted(self.collections_dir.iterdir()):
            if entry.name.startswith("."):
                # Leftovers of an interrupted create or delete.
                shutil.rmtree(entry, ignore_errors=True)
                continue
            try:
                collection = Collection.open(entry, self.index_config)
            except (OSError, ValueError, KeyError) as exc:
                logger.error("collection not loaded", extra={"path": str(entry), "error": str(exc)})
                continue
            self._collections[collection.name] = collection

    def require_models(self) -> Models:
        if self.models is None:
            raise ServiceUnavailable(
                "rag_svc is still loading its models; retry in a few seconds.",
                code="models_loading",
                headers={"Retry-After": "5"},
            )
        return self.models

    # --- collections ------------------------------------------------------------------

    def create_collection(self, name: str, metadata: dict[str, Any]) -> dict[str, Any]:
        validate_collection_name(name)
        self.require_models()
        with self._lock:
            if name in self._collections:
                raise Conflict(
                    f"Collection {name!r} already exists.", param="name", code="collection_exists"
                )
            try:
                collection = Collection.create(
                    self.collections_dir, name, self.index_config, metadata
                )
            except FileExistsError:
                raise Conflict(
                    f"Collection {name!r} already exists.", param="name", code="collection_exists"
                ) from None
            self._collections[name] = collection
        logger.info("collection created", extra={"collection": name})
        return collection.info()

    def list_collections(self) -> list[dict[str, Any]]:
        self.require_models()  # collections open with the models: an empty list would lie
        with self._lock:
            collections = sorted(self._collections.values(), key=lambda c: c.name)
        return [c.info() for c in collections]

    def has_collection(self, name: str) -> bool:
        return name in self._collections

    def collection(self, name: str) -> Collection:
        self.require_models()  # until then a stored collection would read as missing
        collection = self._collections.get(name)
        if collection is None:
            raise NotFound(
                f"Collection {name!r} does not exist; create it with POST /v1/collections.",
                param="name",
                code="collection_not_found",
            )
        return collection

    def delete_collection(self, name: str) -> None:
        with self._lock:
            collection = self.collection(name)
            del self._collections[name]
        collection.destroy(self.collections_dir)
        logger.info("collection deleted", extra={"collection": name})

    # --- documents --------------------------------------------------------------------

    def ingest(
        self, name: str, documents: list[DocumentIn], redact: bool | None = None
    ) -> IngestResponse:
        models = self.require_models()
        collection = self.collection(name)
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
                f"Collection {name!r} was deleted during the ingest.",
                code="collection_not_found",
            ) from None
        elapsed = max(time.perf_counter() - started, 1e-9)
        logger.info(
            "documents ingested",
            extra={
                "collection": name,
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

    def get_document(self, name: str, document_id: str) -> dict[str, Any]:
        snapshot = self.collection(name).snapshot
        document = snapshot.documents.get(document_id)
        if document is None:
            raise self._document_not_found(name, document_id)
        return {
            "id": document.id,
            "collection": name,
            "text": document.text,
            "metadata": document.metadata,
            "chunks": document.chunk_count,
            "created_at": int(document.created_at),
        }

    def delete_document(self, name: str, document_id: str) -> None:
        try:
            deleted = self.collection(name).delete_document(document_id)
        except KeyError:
            deleted = False
        if not deleted:
            raise self._document_not_found(name, document_id)

    @staticmethod
    def _document_not_found(name: str, document_id: str) -> NotFound:
        return NotFound(
            f"Document {document_id!r} is not in collection {name!r}.",
            param="id",
            code="document_not_found",
        )

    # --- search -----------------------------------------------------------------------

    def search(
        self, name: str, request: SearchRequest, dense_text: str | None = None
    ) -> SearchResponse:
        models = self.require_models()
        collection = self.collection(name)
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
