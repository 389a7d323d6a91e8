"""The router_svc app: `create_app(settings)`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.health import ReadinessCheck
from common.service import create_service_app
from router_svc.api import router
from router_svc.backends import Backends
from router_svc.classifier import Embedder, IntentClassifier
from router_svc.dispatch import Dispatcher
from router_svc.intent_head import IntentHead
from router_svc.route_decision import Router
from router_svc.settings import RouterSettings

__all__ = ["create_app"]


def build_classifier(
    settings: RouterSettings, embedder: Embedder | None = None
) -> IntentClassifier:
    """The trained head on the in-process MiniLM encoder (or `embedder`, in tests)."""
    head = IntentHead.load(settings.intent_weights_path())
    if embedder is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from common.minilm import MiniLMEmbedder

        embedder = MiniLMEmbedder(
            threads=settings.embedding_threads, dtype=settings.embedding_dtype
        )
    return IntentClassifier(
        embedder,
        head,
        follow_up_max_words=settings.follow_up_max_words,
        context_turns=settings.context_turns,
    )


def create_app(settings: RouterSettings, *, embedder: Embedder | None = None) -> FastAPI:
    """Build router_svc; `embedder` replaces the MiniLM encoder (unit tests).

    Ready once the classifier is loaded; the services it fans out to are
    optional readiness checks (a plan degrades without them).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        classifier = build_classifier(settings, embedder)
        # The first call pays one-off allocation costs; a request should not.
        classifier.classify("warm up")
        intent_router = Router(settings, classifier)
        app.state.router = intent_router
        app.state.dispatcher = Dispatcher(
            settings, intent_router, Backends(app.state.upstreams, settings.model, app.state.models)
        )

        async def classifier_loaded() -> None:
            if app.state.router is None:
                raise RuntimeError("the intent classifier is not loaded")

        app.state.readiness_checks.append(ReadinessCheck("intent_classifier", classifier_loaded))
        yield

    app = create_service_app(
        settings,
        title="router_svc",
        description="Intent classifier; plans and fans out to the services below it.",
        lifespan=lifespan,
    )
    app.include_router(router)
    return app
