"""The rag_svc app: `create_app(settings)`."""

from __future__ import annotations

from fastapi import FastAPI

from common.service import create_service_app
from rag_svc.settings import RagSettings

__all__ = ["create_app"]


def create_app(settings: RagSettings) -> FastAPI:
    """Build the rag_svc app; its routes arrive with the issues that build them."""
    return create_service_app(
        settings,
        title="rag_svc",
        description=(
            "Ingestion, embeddings, FAISS + BM25 hybrid search, cross-encoder rerank, "
            "cited answers."
        ),
    )
