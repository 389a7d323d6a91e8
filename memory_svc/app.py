"""The memory_svc app: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from common.health import ReadinessCheck
from common.service import create_service_app
from memory_svc.settings import MemorySettings

__all__ = ["create_app"]


def create_app(settings: MemorySettings) -> FastAPI:
    """Build memory_svc; it is ready when its Redis answers."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = settings.readiness_timeout_s
        app.state.redis = aioredis.from_url(
            settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        app.state.readiness_checks.append(ReadinessCheck("redis", app.state.redis.ping))
        try:
            yield
        finally:
            await app.state.redis.aclose()

    return create_service_app(
        settings,
        title="memory_svc",
        description="Redis-backed conversation history, context, user state, memories, feedback.",
        lifespan=lifespan,
    )
