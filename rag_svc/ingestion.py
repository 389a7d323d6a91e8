"""From request documents to `PreparedDocument`s: redact, id, chunk, sign, embed.

The slow part (embedding) runs outside the collection's lock; documents that
already nearly repeat a stored one (or an earlier one of the same batch) are
not embedded at all. The commit checks duplicates again under the lock, so
two concurrent ingests of one text still store it once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.contracts.rag import DocumentIn, DuplicateDocument
from common.minilm import MiniLMEmbedder
from common.pii import redact_pii
from rag_svc.chunking import Chunker
from rag_svc.collection import PreparedDocument
from rag_svc.dedup import MinHasher, best_match
from rag_svc.indexes import bm25_tokens
from rag_svc.storage import CollectionStore
from rag_svc.store import StoredChunk

__all__ = ["EmptyDocument", "PreparedBatch", "prepare_documents", "stable_document_id"]

logger = logging.getLogger("rag_svc.ingest")

# Batches with at least this many chunks log their progress.
PROGRESS_MIN_CHUNKS = 256
PROGRESS_EVERY_S = 2.0


class EmptyDocument(ValueError):
    """A document with no indexable text (after extraction and redaction)."""

    def __init__(self, index: int) -> None:
        super().__init__(f"documents.{index}.text has no indexable text")
        self.index = index


@dataclass
class PreparedBatch:
    documents: list[PreparedDocument]
    duplicates: list[DuplicateDocument]
    redactions: int


def stable_document_id(text: str) -> str:
    """The id of a document sent without one: the same text always gets the same id."""
    return "doc-" + hashlib.sha256(text.encode()).hexdigest()[:20]


def _chunk_metadata(metadata: dict[str, Any], doc_id: str, **own: Any) -> dict[str, Any]:
    return {**metadata, "doc_id": doc_id, **own}


def prepare_documents(
    documents: list[DocumentIn],
    *,
    collection: CollectionStore,
    chunker: Chunker,
    minhasher: MinHasher,
    embedder: MiniLMEmbedder,
    redact: bool,
) -> PreparedBatch:
    started = time.perf_counter()
    redactions = 0
    duplicates: list[DuplicateDocument] = []
    pending: list[tuple[str, str, dict[str, Any], np.ndarray, list[StoredChunk]]] = []
    batch_ids: list[str] = []
    batch_signatures: list[np.ndarray] = []
    for index, doc in enumerate(documents):
        text = doc.text
        metadata = dict(doc.metadata)
        if redact:
            redaction = redact_pii(text)
            text = redaction.text
            redactions += redaction.total
        doc_id = doc.id or stable_document_id(text)
        chunks = chunker.split(text)
        if not chunks:
            raise EmptyDocument(index)
        signature = minhasher.signature(text)
        duplicate = collection.find_duplicate(doc_id, signature)
        if duplicate is None and batch_signatures:
            row, similarity = best_match(signature, np.stack(batch_signatures))
            if similarity >= collection.config.dedup_threshold:
                duplicate = (batch_ids[row], similarity)
        if duplicate is not None:
            duplicates.append(
                DuplicateDocument(
                    id=doc_id, duplicate_of=duplicate[0], similarity=round(duplicate[1], 4)
                )
            )
            continue
        batch_ids.append(doc_id)
        batch_signatures.append(signature)
        title = metadata.get("title")
        header = f"{title}\n" if isinstance(title, str) and title.strip() else ""
        stored = [
            StoredChunk(
                chunk_id=f"{doc_id}#{c.position}",
                doc_id=doc_id,
                text=c.text,
                metadata=_chunk_metadata(
                    metadata,
                    doc_id,
                    chunk_id=f"{doc_id}#{c.position}",
                    position=c.position,
                    char_start=c.char_start,
                    char_end=c.char_end,
                    tokens=c.tokens,
                ),
                index_text=header + c.text,
            )
            for c in chunks
        ]
        pending.append((doc_id, text, metadata, signature, stored))

    texts = [c.index_text for *_, stored in pending for c in stored]
    vectors = embedder.encode(texts, progress=_progress(collection.name, len(texts), started))
    prepared, row = [], 0
    for doc_id, text, metadata, signature, stored in pending:
        n = len(stored)
        prepared.append(
            PreparedDocument(
                doc_id,
                text,
                metadata,
                signature,
                stored,
                vectors[row : row + n],
                bm25_tokens([c.index_text for c in stored]),
            )
        )
        row += n
    return PreparedBatch(prepared, duplicates, redactions)


def _progress(collection: str, total: int, started: float) -> Any:
    state = {"done": 0, "logged": started}

    def report(n: int) -> None:
        state["done"] += n
        now = time.perf_counter()
        if total >= PROGRESS_MIN_CHUNKS and (
            now - state["logged"] >= PROGRESS_EVERY_S or state["done"] == total
        ):
            state["logged"] = now
            elapsed = max(now - started, 1e-9)
            logger.info(
                "ingest progress",
                extra={
                    "collection": collection,
                    "chunks_done": state["done"],
                    "chunks_total": total,
                    "chunks_per_s": round(state["done"] / elapsed, 1),
                },
            )

    return report
