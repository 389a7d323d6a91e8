"""Settings of rag_svc (env prefix `RAG_`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from common.contracts.rag import CollectionName
from common.models import ModelEngines, default_model_field, model_engines_field
from common.settings import EmbeddingDtype, Port, ServiceSettings, default_url, mmap_threshold_field

__all__ = ["RagSettings"]


class RagSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="ignore")

    service_name: ClassVar[str] = "rag_svc"

    port: Port = 8003
    # Its embedder and reranker run on inputs of every length: with glibc's dynamic
    # threshold, ingesting 200 articles left 320 MiB resident; fixed, 27 MiB, for an
    # ingest 5-8% slower (common/heap.py).
    malloc_mmap_threshold_bytes: int = mmap_threshold_field(
        128 * 1024, "0: glibc's dynamic threshold."
    )
    moe_url: str = default_url("moe_svc")
    model_engines: ModelEngines = model_engines_field("RAG_")
    default_model: str = default_model_field("RAG_")

    # Storage.
    storage_backend: Literal["embedded", "milvus"] = Field(
        "embedded",
        description="Where collections live: `embedded` (segments in the data dir) or `milvus`.",
    )
    milvus_uri: str = Field(
        "",
        description="Milvus of RAG_STORAGE_BACKEND=milvus: a `.db` path (milvus-lite) or "
        "http://host:19530 (a server or cluster); empty: `<data_dir>/rag/milvus.db`.",
    )

    # Ingestion.
    chunk_tokens: int = Field(
        200, ge=32, le=254, description="Chunk size in embedding-model tokens (the model sees 256)."
    )
    chunk_overlap_tokens: int = Field(
        40, ge=0, description="Tokens of whole sentences repeated at the start of the next chunk."
    )
    dedup_threshold: float = Field(
        0.9, gt=0, le=1, description="MinHash Jaccard at or above which a document is a duplicate."
    )
    redact_pii: bool = Field(
        False, description="Redact emails, phone and card numbers on ingest unless a request says."
    )
    max_upload_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest upload: a file, or a JSON body of documents."
    )
    max_documents_per_request: int = Field(1000, ge=1, description="Documents per ingest request.")
    max_document_chars: int = Field(2_000_000, ge=1, description="Longest document text.")
    embedding_batch_size: int = Field(32, ge=1, le=512, description="Texts per embedding batch.")
    embedding_dtype: EmbeddingDtype = Field(
        "auto",
        description="The embedding model's compute dtype: auto is bfloat16 where the CPU has "
        "AMX (about 3x faster, vectors within 0.9999 cosine of float32's), else float32.",
    )
    embeddings_max_inputs: int = Field(
        256, ge=1, description="Inputs per `POST /v1/embeddings` request."
    )

    # Retrieval.
    hnsw_threshold: int = Field(
        20_000, ge=1, description="Chunks beyond which a collection uses HNSW, not exact search."
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW links per node.")
    hnsw_ef_search: int = Field(128, ge=8, description="HNSW search breadth.")
    fusion_candidates: int = Field(50, ge=1, description="Candidates per retriever fed to RRF.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    rerank_candidates: int = Field(
        20, ge=1, le=200, description="First-stage candidates the cross-encoder rescores."
    )
    rerank_passage_chars: int = Field(
        2000,
        ge=0,
        description="Document characters, from the best chunk on, the reranker reads (0: chunk).",
    )
    reranker_threads: int = Field(0, ge=0, description="onnxruntime threads (0: its default).")

    # Answers.
    answer_model: str = Field(
        "", description="moe_svc model for answers (empty: the first model it lists)."
    )
    answer_max_tokens: int = Field(384, ge=16, description="Longest generated answer.")
    answer_timeout_s: float = Field(180.0, gt=0, description="Timeout of one moe_svc generation.")
    context_max_tokens: int = Field(
        1200, ge=64, description="Token budget of the numbered sources in an answer prompt."
    )
    support_lexical_threshold: float = Field(
        0.6, ge=0, le=1, description="Share of a cited sentence's words its source must contain."
    )
    support_embedding_threshold: float = Field(
        0.65, ge=-1, le=1, description="Cosine to a source sentence that also counts as support."
    )
    attribution_threshold: float = Field(
        3.0, description="Cross-encoder logit a source needs to support an answer sentence."
    )
    unsupported_sentences: Literal["flag", "drop"] = Field(
        "drop", description="Answer sentences no source supports: flagged, or dropped."
    )
    multi_hop_max_subquestions: int = Field(3, ge=1, le=8, description="Sub-questions per hop.")
    self_rag_min_similarity: float = Field(
        0.2, ge=-1, le=1, description="Best dense cosine below which self-RAG skips retrieval."
    )
    self_rag_min_relevance: float = Field(
        0.02, ge=0, le=1, description="Cross-encoder probability a source needs under self-RAG."
    )

    # Collections that exist from the first start, empty until documents arrive: `docs` is
    # where the router looks for factual answers and where uploads go by default.
    default_collections: list[CollectionName] = Field(
        ["docs"], description="Collections created empty at start when missing."
    )

    # The default knowledge base.
    wiki_enabled: bool = Field(
        True,
        description="Build the `wiki` collection from gensim's Wikipedia pages at first start.",
    )
    wiki_max_pages: int = Field(0, ge=0, description="Pages of the wiki build (0: all).")
    wiki_max_chars_per_page: int = Field(
        10_000, ge=0, description="Characters kept per wiki page (0: all)."
    )

    @model_validator(mode="after")
    def _milvus_uri_kind(self) -> RagSettings:
        uri = self.milvus_uri
        if uri and not uri.endswith(".db") and not uri.startswith(("http://", "https://")):
            raise ValueError(
                f"RAG_MILVUS_URI {uri!r} is neither a milvus-lite file (a path ending in .db) "
                "nor a Milvus server (http://host:19530)"
            )
        return self

    @model_validator(mode="after")
    def _overlap_below_chunk(self) -> RagSettings:
        if self.chunk_overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                "RAG_CHUNK_OVERLAP_TOKENS must be smaller than RAG_CHUNK_TOKENS "
                f"({self.chunk_overlap_tokens} >= {self.chunk_tokens})"
            )
        return self
