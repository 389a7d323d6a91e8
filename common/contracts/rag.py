"""rag_svc's wire models that other services use (rag_svc/README.md).

- `POST /v1/embeddings`: `EmbeddingsRequest` -> `EmbeddingsResponse` (OpenAI-compatible).
- `POST /v1/collections/{name}/documents`: `IngestRequest` -> `IngestResponse`.
- `GET /v1/collections/{name}/documents?after=&limit=`: `DocumentPage` (in id order);
  `GET /v1/collections/{name}/documents/{id}`: `DocumentOut`.
- `POST /v1/collections/{name}/search`: `SearchRequest` -> `SearchResponse`.
- `POST /v1/collections/{name}/answer`: `AnswerRequest` -> `AnswerResponse`.
- `POST /v1/search`, `POST /v1/answer`: the same over several collections at once
  (`CollectionsSearchRequest`, `CollectionsAnswerRequest`; `collections` absent: every
  collection the caller may read), fused into one ranking.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator

__all__ = [
    "COLLECTION_NAME_PATTERN",
    "DOCUMENT_ID_PATTERN",
    "EMBEDDING_DIMENSIONS",
    "EMBEDDING_MODEL",
    "MAX_K",
    "AnswerRequest",
    "AnswerResponse",
    "AnswerSource",
    "Attribution",
    "Citation",
    "CitationOrigin",
    "CollectionCreate",
    "CollectionInfo",
    "CollectionList",
    "CollectionName",
    "CollectionUpdate",
    "CollectionsAnswerRequest",
    "CollectionsSearchRequest",
    "Deleted",
    "DocumentId",
    "DocumentIn",
    "DocumentOut",
    "DocumentPage",
    "DuplicateDocument",
    "EmbeddingData",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "EmbeddingsUsage",
    "IngestRequest",
    "IngestResponse",
    "MetadataFilter",
    "RetrievalTrace",
    "SearchMode",
    "SearchRequest",
    "SearchResponse",
    "SearchResult",
    "SentenceSupport",
    "UnsupportedPolicy",
]

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIMENSIONS = 384
# Most results one search or answer may ask for.
MAX_K = 50
# Most collections one search or answer may name.
MAX_COLLECTIONS = 32

SearchMode = Literal["hybrid", "dense", "bm25"]
# Answer sentences no source supports: kept and flagged, or dropped from the answer.
UnsupportedPolicy = Literal["flag", "drop"]
FILTER_OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte"})


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


def _known_operators(value: dict[str, Any] | None) -> dict[str, Any] | None:
    for field, condition in (value or {}).items():
        if isinstance(condition, dict):
            unknown = set(condition) - FILTER_OPERATORS
            if unknown or not condition:
                known = ", ".join(sorted(FILTER_OPERATORS))
                raise ValueError(f"{field!r}: unknown operator(s) {sorted(unknown)}; use {known}")
    return value


NonBlankStr = Annotated[str, AfterValidator(_not_blank)]
# {field: value} equality, {field: [values]} membership, or {field: {"$gte": 3, ...}};
# fields are metadata keys plus `doc_id` and `chunk_id`; all conditions must hold.
MetadataFilter = Annotated[dict[str, Any] | None, AfterValidator(_known_operators)]
# 1-64 letters, digits, '_' or '-', starting with a letter or digit: safe as a directory name.
COLLECTION_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
CollectionName = Annotated[str, Field(pattern=COLLECTION_NAME_PATTERN)]
# 1-256 characters, no control character and no '/': safe in a URL path segment.
DOCUMENT_ID_PATTERN = r"^[^\x00-\x1f/]{1,256}$"
DocumentId = Annotated[str, Field(min_length=1, max_length=256, pattern=DOCUMENT_ID_PATTERN)]


# --- embeddings (OpenAI) ------------------------------------------------------------


class EmbeddingsRequest(BaseModel):
    """OpenAI `POST /v1/embeddings`; the openai client sends `encoding_format: base64`."""

    input: str | list[str]
    model: str = EMBEDDING_MODEL
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _inputs_not_empty(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("must hold at least one string")
        if any(not t.strip() for t in texts):
            raise ValueError("strings must not be empty")
        return value


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    # A list of floats, or the little-endian float32 bytes in base64.
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingsUsage


# --- ingestion ------------------------------------------------------------------------


class DocumentIn(BaseModel):
    # Absent: a stable id derived from the text. An existing id is replaced.
    id: DocumentId | None = None
    text: NonBlankStr
    metadata: dict[str, Any] = Field(default_factory=dict)


class IngestRequest(BaseModel):
    documents: list[DocumentIn] = Field(min_length=1)
    # Absent: the service's default (RAG_REDACT_PII).
    redact_pii: bool | None = None


class DocumentOut(BaseModel):
    id: str
    collection: str
    text: str
    metadata: dict[str, Any]
    chunks: int
    created_at: int


class DocumentPage(BaseModel):
    documents: list[DocumentOut]
    # Pass as `after` for the next page; None on the last page.
    next_after: str | None = None


class DuplicateDocument(BaseModel):
    id: str
    # The stored (or earlier in the same request) document it nearly repeats.
    duplicate_of: str
    similarity: float


class IngestResponse(BaseModel):
    ids: list[str]
    chunks: int
    duplicates: list[DuplicateDocument]
    redactions: int = 0


# --- search ---------------------------------------------------------------------------


class SearchRequest(BaseModel):
    query: NonBlankStr
    k: int = Field(5, ge=1, le=MAX_K)
    mode: SearchMode = "hybrid"
    rerank: bool = True
    filter: MetadataFilter = None


class SearchResult(BaseModel):
    doc_id: str
    chunk_id: str
    text: str
    # The cross-encoder's probability when reranked; else the first stage's score.
    score: float
    metadata: dict[str, Any]
    # Every stage's score of this chunk: dense, bm25, rrf, rerank (those that ran).
    scores: dict[str, float] = Field(default_factory=dict)
    # The collection it came from (searches over several collections).
    collection: str | None = None


class SearchResponse(BaseModel):
    results: list[SearchResult]


def _distinct(value: list[str] | None) -> list[str] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("names a collection more than once")
    return value


# The collections a request searches; absent: every collection the caller may read.
CollectionNames = Annotated[
    list[CollectionName] | None,
    Field(min_length=1, max_length=MAX_COLLECTIONS),
    AfterValidator(_distinct),
]


class CollectionsSearchRequest(SearchRequest):
    """`POST /v1/search`: one ranking over several collections (RRF, then the reranker)."""

    collections: CollectionNames = None


# --- answers --------------------------------------------------------------------------


class AnswerRequest(BaseModel):
    question: NonBlankStr
    k: int = Field(5, ge=1, le=MAX_K)
    mode: SearchMode = "hybrid"
    rerank: bool = True
    filter: MetadataFilter = None
    # Embed a hypothetical answer for dense retrieval (HyDE).
    hyde: bool = False
    # Decompose into sub-questions and retrieve for each.
    multi_hop: bool = False
    # Skip retrieval when the question needs none; drop irrelevant sources.
    self_rag: bool = False
    max_tokens: int | None = Field(None, ge=16, le=4096)
    temperature: float = Field(0.0, ge=0, le=2)
    # What becomes of answer sentences no source supports (absent: RAG_UNSUPPORTED_SENTENCES).
    unsupported: UnsupportedPolicy | None = None


class CollectionsAnswerRequest(AnswerRequest):
    """`POST /v1/answer`: an answer from several collections' fused ranking."""

    collections: CollectionNames = None


class AnswerSource(BaseModel):
    # The number the answer cites it by: [number].
    number: int
    doc_id: str
    chunk_id: str
    text: str
    score: float
    metadata: dict[str, Any]
    # The collection it came from, and its document's title (when it has one).
    collection: str | None = None
    title: str | None = None


# model: the model wrote this number and its source supports the sentence; corrected: the
# model wrote another number, replaced by the source that supports the sentence;
# attributed: the model wrote none, the platform added it.
CitationOrigin = Literal["model", "corrected", "attributed"]


class Citation(BaseModel):
    """One `[number]` in one sentence of the answer, and whether its source backs it."""

    number: int
    sentence: str
    # The number names a source that was given.
    valid: bool
    supported: bool
    # Share of the sentence's content words found in the source.
    lexical: float
    # Best cosine between the sentence and a sentence of the source.
    semantic: float
    doc_id: str | None = None
    chunk_id: str | None = None
    # The cross-encoder's probability that the source supports the sentence (attribution).
    support: float | None = None
    origin: CitationOrigin = "model"


class SentenceSupport(BaseModel):
    """One sentence of the generated answer and the source that supports it best."""

    # Without citation markers.
    sentence: str
    # The best-supporting source's number; null when none reaches the threshold.
    source: int | None
    # That source's support (the cross-encoder's probability, 0-1).
    support: float
    supported: bool
    # The numbers the model wrote after it.
    written: list[int] = Field(default_factory=list)
    # The answer's last sentence, cut by max_tokens before it ended: kept as written,
    # never cited or dropped, and left out of `verified`.
    unfinished: bool = False


class Attribution(BaseModel):
    """How the answer's sentences were matched to the sources after generation."""

    # What was done with sentences no source supports: kept without a citation and
    # listed here (flagged), or taken out of the answer (dropped).
    unsupported: Literal["flagged", "dropped"]
    # The support a sentence needs (RAG_ATTRIBUTION_THRESHOLD).
    threshold: float
    sentences: list[SentenceSupport]
    # Numbers the model wrote that were replaced or taken out.
    corrected: list[int] = Field(default_factory=list)
    removed: list[int] = Field(default_factory=list)


class RetrievalTrace(BaseModel):
    used: bool
    # Why retrieval was skipped or why sources were dropped (self-RAG).
    reason: str | None = None
    queries: list[str] = Field(default_factory=list)
    hyde_passage: str | None = None
    sub_questions: list[str] = Field(default_factory=list)


class AnswerResponse(BaseModel):
    answer: str
    citations: list[Citation]
    # At least one citation, and every citation names a given source that supports it.
    verified: bool
    sources: list[AnswerSource]
    retrieval: RetrievalTrace
    model: str
    # Each sentence's best-supporting source (null when the answer used no sources).
    attribution: Attribution | None = None
    # "length": max_tokens cut the answer (its last sentence is `unfinished`).
    finish_reason: Literal["stop", "length"] = "stop"


# --- collections ----------------------------------------------------------------------


class CollectionCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    metadata: dict[str, Any] = Field(default_factory=dict)
    # True: readable by every tenant, writable by admins (admin keys only).
    shared: bool = False


class CollectionUpdate(BaseModel):
    """`PATCH /v1/collections/{name}` (admin keys only)."""

    # True: share the caller's own collection; False: make a shared one the caller's own.
    shared: bool


class CollectionInfo(BaseModel):
    name: str
    documents: int
    chunks: int
    # The dense index: "flat" (exact inner product) or "hnsw".
    index: Literal["flat", "hnsw"]
    created_at: int
    metadata: dict[str, Any]
    # Readable by every tenant (else the caller's tenant's own).
    shared: bool


class CollectionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CollectionInfo]


class Deleted(BaseModel):
    id: str
    object: Literal["collection", "document"]
    deleted: bool = True
