"""The Milvus backend: a collection's chunks, documents and BM25 index stored in Milvus.

    <namespace>/<name>/MILVUS.json  {"name", "created_at", "metadata", "prefix",
                                     "next_row", "next_page"}: the collection's record
    Milvus <prefix>_chunks  one entity per chunk, keyed by its row: chunk_id, doc_id, text,
                            index_text, metadata (JSON), dense (FLOAT_VECTOR, inner product),
                            terms (the BM25 tokens, split on spaces) and sparse (Milvus's
                            BM25 function over `terms`)
    Milvus <prefix>_docs    one entity per page of a document's text (VARCHAR holds 64 KiB),
                            each carrying the document's fields, its chunk rows and signature

The same code talks to milvus-lite (a `.db` path: the Milvus engine as a local
process, FLAT index) and to a Milvus server or cluster (an http URI: HNSW).

Rows are primary keys handed out in commit order and reserved in the record
before the insert, so they are never reused. A view is the rows below the count
it was taken at: its searches filter on `row < count` and never see a later
commit. Deletes are Milvus deletes, seen at once; a replaced document's new
chunks go in before its old ones go out, so a search may briefly see both.
Page 0 of a document, inserted last, is its commit record: `open` keeps the
documents whose page 0 it finds and deletes rows and pages nobody owns.

In memory stays only what is small: each document's row and page ranges and
its MinHash signature (dedup compares signatures slot by slot, which no
Milvus metric does), and the alive mask over rows. Metadata filters are
evaluated by the retriever on chunks the view reads from Milvus in blocks.
BM25 uses the embedded backend's tokens (`rag_svc.indexes.bm25_tokens`) and
its k1 and b, so both backends match and weigh the same words.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.files import atomic_write_bytes
from rag_svc.collection import CommitResult, IndexConfig, PreparedDocument, split_duplicates
from rag_svc.dedup import best_match
from rag_svc.indexes import BM25_B, BM25_K1
from rag_svc.store import StoredChunk, StoredDocument

try:
    from pymilvus import (  # type: ignore[import-untyped]
        DataType,
        Function,
        FunctionType,
        MilvusClient,
    )
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "RAG_STORAGE_BACKEND=milvus needs pymilvus and milvus-lite: "
        "pip install -e '.[milvus]' (or set RAG_STORAGE_BACKEND=embedded)."
    ) from exc

__all__ = ["MilvusBackend", "MilvusCollection", "MilvusView"]

logger = logging.getLogger("rag_svc.backends.milvus")

HEADER = "MILVUS.json"
PAGE_CHARS = 16_000  # 4 bytes a character at most: a page fits VARCHAR's 65,535 bytes
VARCHAR_BYTES = 65_535
INSERT_BATCH = 256  # entities per insert: well under gRPC's message limit
READ_BATCH = 1024  # rows the view reads at once for `chunk(row)`
DELETE_BATCH = 1000  # keys per delete expression
MAX_TOP_K = 16_384  # Milvus's largest search limit
CHUNK_FIELDS = ["chunk_id", "doc_id", "text", "index_text", "metadata"]
_ABSENT = StoredChunk("", "", "", {}, "")  # a row that holds no chunk (deleted)


@dataclass(frozen=True)
class _DocumentEntry:
    """What stays in memory of a document: where its rows and pages are, its signature."""

    rows: range
    pages: range
    signature: np.ndarray


@dataclass(frozen=True)
class _State:
    """The published state of a collection; replaced whole by a commit, never mutated."""

    documents: dict[str, _DocumentEntry]
    alive: np.ndarray  # (row_count,) bool: rows of live documents
    ids: list[str]  # the document of each row of `signatures`
    signatures: np.ndarray  # (documents, signature_size) uint32

    @classmethod
    def build(
        cls, documents: dict[str, _DocumentEntry], row_count: int, signature_size: int
    ) -> _State:
        alive = np.zeros(row_count, bool)
        for entry in documents.values():
            alive[entry.rows.start : entry.rows.stop] = True
        signatures = (
            np.stack([e.signature for e in documents.values()])
            if documents
            else np.zeros((0, signature_size), np.uint32)
        )
        return cls(documents, alive, list(documents), signatures)

    def nearest(self, signature: np.ndarray, excluding: set[str]) -> tuple[str, float]:
        """The document (not in `excluding`) with the closest signature ("", 0.0 if none)."""
        keep = np.array([i not in excluding for i in self.ids], bool)
        row, similarity = best_match(signature, self.signatures[keep])
        return (np.array(self.ids)[keep][row], similarity) if row >= 0 else ("", 0.0)


def _tables(prefix: str) -> tuple[str, str]:
    return f"{prefix}_chunks", f"{prefix}_docs"


def _write_header(directory: Path, header: dict[str, Any]) -> None:
    atomic_write_bytes(directory / HEADER, json.dumps(header, indent=1).encode())


def _signature(value: Any) -> np.ndarray:
    # A BINARY_VECTOR comes back as a list holding one bytes object.
    raw = value[0] if isinstance(value, list) else value
    return np.frombuffer(bytes(raw), np.uint32).copy()


def _ranges(field: str, ranges: Iterable[range]) -> Iterator[str]:
    """Delete expressions covering `ranges` of an integer key, a few ranges each."""
    terms = [f"({field} >= {r.start} and {field} < {r.stop})" for r in ranges if len(r)]
    for start in range(0, len(terms), 100):
        yield " or ".join(terms[start : start + 100])


def _scan(client: Any, table: str, filter: str, fields: list[str]) -> Iterator[dict[str, Any]]:
    iterator = client.query_iterator(table, batch_size=1000, filter=filter, output_fields=fields)
    try:
        while batch := iterator.next():
            yield from batch
    finally:
        iterator.close()


class MilvusView:
    """One state of a collection as a `rag_svc.storage.SearchView`; rows are Milvus keys."""

    def __init__(self, collection: MilvusCollection, state: _State) -> None:
        self._client = collection.backend.client
        self._chunks, self._docs = _tables(collection.prefix)
        self._dense_params = collection.backend.dense_search_params
        self.state = state
        self._cache: dict[int, StoredChunk] = {}
        self._documents: dict[str, StoredDocument] = {}

    @property
    def row_count(self) -> int:
        return len(self.state.alive)

    def chunk(self, row: int) -> StoredChunk:
        cached = self._cache.get(row)
        if cached is None:
            start = row - row % READ_BATCH
            stop = min(start + READ_BATCH, self.row_count)
            if self.state.alive[start:stop].any():
                entities = self._client.query(
                    self._chunks,
                    filter=f"row >= {start} and row < {stop}",
                    output_fields=["row", *CHUNK_FIELDS],
                )
                self._remember(entities)
            for absent in range(start, stop):
                self._cache.setdefault(absent, _ABSENT)
            cached = self._cache[row]
        return cached

    def document(self, document_id: str) -> StoredDocument | None:
        entry = self.state.documents.get(document_id)
        if entry is None:
            return None
        cached = self._documents.get(document_id)
        if cached is None:
            pages = self._client.get(
                self._docs,
                ids=list(entry.pages),
                output_fields=["page", "text", "metadata", "created_at"],
            )
            if len(pages) != len(entry.pages):
                return None  # deleted since this view was taken
            pages.sort(key=lambda p: p["page"])
            cached = self._documents[document_id] = StoredDocument(
                document_id,
                "".join(p["text"] for p in pages),
                pages[0]["metadata"],
                len(entry.rows),
                float(pages[0]["created_at"]),
                entry.signature,
            )
        return cached

    def mask(self, allowed: np.ndarray | None) -> np.ndarray:
        return self.state.alive if allowed is None else self.state.alive & allowed

    def dense_search(
        self, vector: np.ndarray, n: int, allowed: np.ndarray
    ) -> list[tuple[int, float]]:
        return self._search("dense", vector.astype(np.float32).tolist(), n, allowed)

    def keyword_search(
        self, tokens: list[str], n: int, allowed: np.ndarray
    ) -> list[tuple[int, float]]:
        terms = " ".join(t for t in tokens if t.strip())
        return self._search("sparse", terms, n, allowed) if terms else []

    def _search(
        self, field: str, query: Any, n: int, allowed: np.ndarray
    ) -> list[tuple[int, float]]:
        if allowed is self.state.alive or np.array_equal(allowed, self.state.alive):
            expression = f"row < {self.row_count}"
        else:
            rows = np.flatnonzero(allowed)
            if rows.size == 0:
                return []
            expression = f"row in [{','.join(map(str, rows.tolist()))}]"
        hits = self._client.search(
            self._chunks,
            data=[query],
            anns_field=field,
            limit=min(n, MAX_TOP_K),
            filter=expression,
            output_fields=["row", *CHUNK_FIELDS],
            search_params=self._dense_params(n) if field == "dense" else {"metric_type": "BM25"},
        )[0]
        self._remember(hit["entity"] for hit in hits)
        return [(int(hit["id"]), float(hit["distance"])) for hit in hits]

    def _remember(self, entities: Iterable[Mapping[str, Any]]) -> None:
        for e in entities:
            self._cache[int(e["row"])] = StoredChunk(
                e["chunk_id"], e["doc_id"], e["text"], e["metadata"], e["index_text"]
            )


class _Documents(Mapping[str, StoredDocument]):
    """Every document of a view by id; the text is read from Milvus when asked for."""

    def __init__(self, view: MilvusView) -> None:
        self._view = view

    def __getitem__(self, document_id: str) -> StoredDocument:
        document = self._view.document(document_id)
        if document is None:
            raise KeyError(document_id)
        return document

    def __iter__(self) -> Iterator[str]:
        return iter(self._view.state.documents)

    def __len__(self) -> int:
        return len(self._view.state.documents)


class MilvusCollection:
    """A collection stored in Milvus (a `rag_svc.storage.CollectionStore`)."""

    def __init__(
        self,
        backend: MilvusBackend,
        directory: Path,
        header: dict[str, Any],
        config: IndexConfig,
        state: _State,
    ) -> None:
        self.backend = backend
        self.directory = directory
        self.name = str(header["name"])
        self.config = config
        self.deleted = False
        self._header = header
        self._state = state
        self._lock = threading.Lock()

    @property
    def prefix(self) -> str:
        return str(self._header["prefix"])

    # --- reads ------------------------------------------------------------------------

    def view(self) -> MilvusView:
        return MilvusView(self, self._state)

    def info(self) -> dict[str, Any]:
        state = self._state
        return {
            "name": self.name,
            "documents": len(state.documents),
            "chunks": int(state.alive.sum()),
            "index": self.backend.index_kind,
            "created_at": int(self._header["created_at"]),
            "metadata": dict(self._header["metadata"]),
        }

    def document(self, document_id: str) -> StoredDocument | None:
        return self.view().document(document_id)

    def documents(self) -> Mapping[str, StoredDocument]:
        return _Documents(self.view())

    def find_duplicate(self, document_id: str, signature: np.ndarray) -> tuple[str, float] | None:
        match, similarity = self._state.nearest(signature, {document_id})
        if match and similarity >= self.config.dedup_threshold:
            return match, similarity
        return None

    # --- writes -----------------------------------------------------------------------

    def commit(self, prepared: list[PreparedDocument]) -> CommitResult:
        """Add `prepared` (replacing documents of the same id), skipping near-duplicates."""
        with self._lock:
            self._check_alive()
            old = self._state
            accepted, duplicates = split_duplicates(
                prepared, old.nearest, self.config.dedup_threshold
            )
            if accepted:
                self._insert(old, accepted)
            return CommitResult(
                [d.id for d in accepted], sum(len(d.chunks) for d in accepted), duplicates
            )

    def _insert(self, old: _State, accepted: list[PreparedDocument]) -> None:
        client = self.backend.client
        chunks_table, docs_table = _tables(self.prefix)
        first_row, first_page = int(self._header["next_row"]), int(self._header["next_page"])
        row, page, now = first_row, first_page, time.time()
        entries: dict[str, _DocumentEntry] = {}
        chunk_entities: list[dict[str, Any]] = []
        page_entities: list[dict[str, Any]] = []
        for doc in accepted:
            texts = [doc.text[i : i + PAGE_CHARS] for i in range(0, len(doc.text), PAGE_CHARS)]
            entry = _DocumentEntry(
                range(row, row + len(doc.chunks)),
                range(page, page + max(len(texts), 1)),
                doc.signature,
            )
            entries[doc.id] = entry
            for chunk, vector, tokens in zip(doc.chunks, doc.vectors, doc.tokens, strict=True):
                chunk_entities.append(
                    {
                        "row": row,
                        "chunk_id": chunk.chunk_id,
                        "doc_id": chunk.doc_id,
                        "text": chunk.text,
                        "index_text": chunk.index_text,
                        "metadata": chunk.metadata,
                        "terms": " ".join(tokens),
                        "dense": vector.astype(np.float32).tolist(),
                    }
                )
                row += 1
            for number, text in enumerate(texts or [""]):
                page_entities.append(
                    {
                        "key": entry.pages.start + number,
                        "doc_id": doc.id,
                        "page": number,
                        "text": text,
                        "metadata": doc.metadata,
                        "created_at": now,
                        "first_row": entry.rows.start,
                        "chunk_count": len(entry.rows),
                        "first_page": entry.pages.start,
                        "pages": len(entry.pages),
                        "signature": doc.signature.astype(np.uint32).tobytes(),
                    }
                )
            page = entry.pages.stop
        # Keys are reserved before they are written: a failed commit wastes them, never reuses.
        self._header = {**self._header, "next_row": row, "next_page": page}
        _write_header(self.directory, self._header)
        # Page 0 of each document last: its presence is the commit record `open` reads.
        page_entities.sort(key=lambda p: p["page"] == 0)
        try:
            for table, entities in ((chunks_table, chunk_entities), (docs_table, page_entities)):
                for start in range(0, len(entities), INSERT_BATCH):
                    client.insert(table, entities[start : start + INSERT_BATCH])
        except Exception:
            with contextlib.suppress(Exception):  # the error that matters is the first
                self._delete([range(first_page, page)], [range(first_row, row)])
            raise
        replaced = [old.documents[i] for i in entries if i in old.documents]
        self._delete([e.pages for e in replaced], [e.rows for e in replaced])
        documents = {i: e for i, e in old.documents.items() if i not in entries} | entries
        self._state = _State.build(documents, row, self.config.signature_size)

    def delete_document(self, document_id: str) -> bool:
        with self._lock:
            self._check_alive()
            old = self._state
            entry = old.documents.get(document_id)
            if entry is None:
                return False
            self._delete([entry.pages], [entry.rows])
            documents = {i: e for i, e in old.documents.items() if i != document_id}
            self._state = _State.build(documents, len(old.alive), self.config.signature_size)
            return True

    def _delete(self, pages: list[range], rows: list[range]) -> None:
        """Delete pages (documents' commit records) first, then chunk rows."""
        client = self.backend.client
        chunks_table, docs_table = _tables(self.prefix)
        for expression in _ranges("key", pages):
            client.delete(docs_table, filter=expression)
        for expression in _ranges("row", rows):
            client.delete(chunks_table, filter=expression)

    # --- lifecycle --------------------------------------------------------------------

    def move(self, target: Path) -> None:
        """Rename the collection's directory (its record); the Milvus data stays where it is."""
        with self._lock:
            self._check_alive()
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                raise FileExistsError(str(target))
            self.directory.rename(target)
            self.directory = target

    def destroy(self, trash: Path) -> None:
        """Forget the collection (one rename of its record), then drop its Milvus data."""
        with self._lock:
            self.deleted = True
            target = trash / f".trash-{self.name}-{uuid.uuid4().hex[:8]}"
            self.directory.rename(target)
        shutil.rmtree(target, ignore_errors=True)
        for table in _tables(self.prefix):
            try:
                self.backend.client.drop_collection(table)
            except Exception as exc:  # the record is gone: what is left is unreachable
                logger.error(
                    "milvus collection not dropped", extra={"table": table, "error": str(exc)}
                )

    def _check_alive(self) -> None:
        if self.deleted:
            raise KeyError(self.name)


class MilvusBackend:
    """Collections in one Milvus (a `rag_svc.storage.StorageBackend`), each recorded in a directory.

    `uri` ending in `.db`: milvus-lite, the engine started by pymilvus as a local
    process on that file; otherwise a server or cluster (`http://host:19530`).
    """

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.local = uri.endswith(".db")
        # milvus-lite indexes FLAT whatever it is asked; a server gets a graph index.
        self.index_kind = "flat" if self.local else "hnsw"
        self._client: Any = None
        self._ef_search = 128
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The MilvusClient, connected on first use (milvus-lite starts in about 2 s)."""
        with self._lock:
            if self._client is None:
                if self.local:
                    Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
                with warnings.catch_warnings():
                    # milvus-lite 2.5 reads its version through pkg_resources.
                    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
                    self._client = MilvusClient(self.uri)
            return self._client

    def close(self) -> None:
        """Disconnect; milvus-lite's process on this file stops (the data stays)."""
        with self._lock:
            client, self._client = self._client, None
        if client is None:
            return
        client.close()
        if self.local:
            from milvus_lite.server_manager import (  # type: ignore[import-untyped]
                server_manager_instance,
            )

            server_manager_instance.release_server(self.uri)

    def dense_search_params(self, n: int) -> dict[str, Any]:
        if self.index_kind == "flat":
            return {"metric_type": "IP"}
        return {"metric_type": "IP", "params": {"ef": max(self._ef_search, n)}}

    def create(
        self, root: Path, name: str, config: IndexConfig, metadata: dict[str, Any]
    ) -> MilvusCollection:
        """Create the Milvus collections, then `root/name` (FileExistsError if it exists)."""
        if (root / name).exists():
            raise FileExistsError(name)
        prefix = f"rag_{uuid.uuid4().hex}"
        header = {
            "name": name,
            "created_at": time.time(),
            "metadata": metadata,
            "prefix": prefix,
            "next_row": 0,
            "next_page": 0,
        }
        self._create_tables(prefix, config)
        tmp = root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        _write_header(tmp, header)
        try:
            tmp.rename(root / name)  # fails when the name exists (a non-empty directory)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            for table in _tables(prefix):
                self.client.drop_collection(table)
            raise FileExistsError(name) from None
        state = _State.build({}, 0, config.signature_size)
        return MilvusCollection(self, root / name, header, config, state)

    def open(self, directory: Path, config: IndexConfig) -> MilvusCollection:
        """Read the record, then each document's commit record from Milvus; sweep leftovers."""
        header = json.loads((directory / HEADER).read_text(encoding="utf-8"))
        client = self.client
        chunks_table, docs_table = _tables(header["prefix"])
        for table in (chunks_table, docs_table):
            if not client.has_collection(table):
                raise ValueError(f"{directory}: Milvus at {self.uri} has no collection {table}")
            client.load_collection(table)
        documents: dict[str, _DocumentEntry] = {}
        fields = ["doc_id", "first_row", "chunk_count", "first_page", "pages", "signature"]
        stale: list[_DocumentEntry] = []
        for record in _scan(client, docs_table, "page == 0", fields):
            entry = _DocumentEntry(
                range(record["first_row"], record["first_row"] + record["chunk_count"]),
                range(record["first_page"], record["first_page"] + record["pages"]),
                _signature(record["signature"]),
            )
            previous = documents.get(record["doc_id"])
            if previous is not None:  # an interrupted replacement: the newer version stands
                older, entry = sorted((previous, entry), key=lambda e: e.rows.start)
                stale.append(older)
            documents[record["doc_id"]] = entry
        collection = MilvusCollection(
            self,
            directory,
            header,
            config,
            _State.build(documents, int(header["next_row"]), config.signature_size),
        )
        collection._delete([e.pages for e in stale], [e.rows for e in stale])
        self._sweep(docs_table, "key", [e.pages for e in documents.values()])
        self._sweep(chunks_table, "row", [e.rows for e in documents.values()])
        return collection

    def _sweep(self, table: str, key: str, owned: list[range]) -> None:
        """Delete the entities of `table` whose `key` no document owns (interrupted writes)."""
        kept = {k for r in owned for k in r}
        orphans = [e[key] for e in _scan(self.client, table, "", [key]) if e[key] not in kept]
        for start in range(0, len(orphans), DELETE_BATCH):
            keys = ",".join(map(str, orphans[start : start + DELETE_BATCH]))
            self.client.delete(table, filter=f"{key} in [{keys}]")
        if orphans:
            logger.info("milvus leftovers deleted", extra={"table": table, "count": len(orphans)})

    def _create_tables(self, prefix: str, config: IndexConfig) -> None:
        client = self.client
        self._ef_search = config.hnsw_ef_search
        chunks_table, docs_table = _tables(prefix)

        chunks = client.create_schema(auto_id=False)
        chunks.add_field("row", DataType.INT64, is_primary=True)
        chunks.add_field("chunk_id", DataType.VARCHAR, max_length=VARCHAR_BYTES)
        chunks.add_field("doc_id", DataType.VARCHAR, max_length=4 * 256)
        chunks.add_field("text", DataType.VARCHAR, max_length=VARCHAR_BYTES)
        chunks.add_field("index_text", DataType.VARCHAR, max_length=VARCHAR_BYTES)
        chunks.add_field("metadata", DataType.JSON)
        chunks.add_field(
            "terms",
            DataType.VARCHAR,
            max_length=VARCHAR_BYTES,
            enable_analyzer=True,
            analyzer_params={"tokenizer": "whitespace"},
        )
        chunks.add_field("dense", DataType.FLOAT_VECTOR, dim=config.dimensions)
        chunks.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        chunks.add_function(
            Function(
                name="bm25",
                function_type=FunctionType.BM25,
                input_field_names=["terms"],
                output_field_names=["sparse"],
            )
        )
        indexes = client.prepare_index_params()
        if self.index_kind == "flat":
            indexes.add_index("dense", index_type="FLAT", metric_type="IP")
        else:
            indexes.add_index(
                "dense",
                index_type="HNSW",
                metric_type="IP",
                params={"M": config.hnsw_m, "efConstruction": 200},
            )
        indexes.add_index(
            "sparse",
            index_type="SPARSE_INVERTED_INDEX",
            metric_type="BM25",
            params={"bm25_k1": BM25_K1, "bm25_b": BM25_B},
        )
        client.create_collection(
            chunks_table, schema=chunks, index_params=indexes, consistency_level="Strong"
        )

        docs = client.create_schema(auto_id=False)
        docs.add_field("key", DataType.INT64, is_primary=True)
        docs.add_field("doc_id", DataType.VARCHAR, max_length=4 * 256)
        docs.add_field("page", DataType.INT64)
        docs.add_field("text", DataType.VARCHAR, max_length=VARCHAR_BYTES)
        docs.add_field("metadata", DataType.JSON)
        docs.add_field("created_at", DataType.DOUBLE)
        for field in ("first_row", "chunk_count", "first_page", "pages"):
            docs.add_field(field, DataType.INT64)
        # Exact bytes of the MinHash signature; the index only exists because Milvus
        # loads a collection by its vector index.
        docs.add_field("signature", DataType.BINARY_VECTOR, dim=32 * config.signature_size)
        indexes = client.prepare_index_params()
        indexes.add_index("signature", index_type="BIN_FLAT", metric_type="HAMMING")
        client.create_collection(
            docs_table, schema=docs, index_params=indexes, consistency_level="Strong"
        )
