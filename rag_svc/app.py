"""The rag_svc app: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.caller import DEFAULT_TENANT
from common.health import ReadinessCheck
from common.service import create_service_app
from rag_svc.answering import Answerer
from rag_svc.api import router
from rag_svc.knowledge_base import WikiKnowledgeBase
from rag_svc.layout import CollectionRef
from rag_svc.library import Library
from rag_svc.settings import RagSettings

__all__ = ["create_app"]

logger = logging.getLogger("rag_svc.app")


def create_app(settings: RagSettings) -> FastAPI:
    """Build rag_svc; it is ready once its models are loaded (and the wiki built, if enabled).

    Loading runs in the background, so `/healthz` answers at once and `/readyz`
    says what is still loading.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # faiss reports which CPU build it loaded at INFO: noise in every start-up.
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        library = Library(settings)
        chat = app.state.models.chat(settings.answer_model, settings.answer_timeout_s)
        app.state.library = library
        app.state.answerer = Answerer(library, chat, settings)
        wiki = (
            WikiKnowledgeBase(library, settings.wiki_max_pages, settings.wiki_max_chars_per_page)
            if settings.wiki_enabled
            else None
        )
        # What went wrong, by stage ("models", "wiki"): readiness shows it.
        failures: dict[str, str] = {}

        async def start() -> None:
            stage = "models"
            try:
                await asyncio.to_thread(library.load)
                # The platform's own; every other tenant gets its own on first use.
                library.ensure_default_collections(DEFAULT_TENANT)
                if wiki is not None:
                    stage = "wiki"
                    await asyncio.to_thread(wiki.ensure)
            except Exception as exc:
                logger.exception("start-up failed", extra={"stage": stage})
                failures[stage] = f"{type(exc).__name__}: {exc}"

        async def models_loaded() -> None:
            if "models" in failures:
                raise RuntimeError(failures["models"])
            if library.models is None:
                raise RuntimeError("loading the embedding and reranking models")
            # A default collection a caller deleted comes back empty, as on any access.
            await asyncio.to_thread(library.ensure_default_collections, DEFAULT_TENANT)
            missing = [
                name
                for name in settings.default_collections
                if not library.has_collection(CollectionRef(name, DEFAULT_TENANT))
            ]
            if missing:
                raise RuntimeError(f"creating the default collections {missing}")

        async def wiki_built() -> None:
            assert wiki is not None
            if "wiki" in failures:
                raise RuntimeError(f"the wiki build failed: {failures['wiki']}")
            if not wiki.ready:
                raise RuntimeError(f"building the wiki collection ({wiki.progress})")

        app.state.readiness_checks.append(ReadinessCheck("models", models_loaded))
        if wiki is not None:
            app.state.readiness_checks.append(ReadinessCheck("wiki", wiki_built))
        task = asyncio.create_task(start())
        try:
            yield
        finally:
            if wiki is not None:
                wiki.stop()
            # The worker thread finishes its current step; wait for it so no write is cut.
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = create_service_app(
        settings,
        title="rag_svc",
        description=(
            "Ingestion, embeddings, FAISS + BM25 hybrid search, cross-encoder rerank, "
            "cited answers."
        ),
        lifespan=lifespan,
    )
    app.include_router(router)
    return app
