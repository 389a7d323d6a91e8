"""The gateway app: `create_app(settings)`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI

from common.http_client import ServiceClient
from common.service import create_service_app
from gateway import api
from gateway.settings import GatewaySettings

__all__ = ["create_app"]


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build the gateway; `/readyz` aggregates the readiness of the platform."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = settings.readiness_timeout_s
        app.state.redis = aioredis.from_url(
            settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        # Probe-only clients: readiness must not trip the call clients' breakers.
        app.state.probe_clients = {
            name: ServiceClient(name, url, connect_timeout_s=timeout)
            for name, url in settings.service_urls().items()
        }
        try:
            yield
        finally:
            await asyncio.gather(*(c.aclose() for c in app.state.probe_clients.values()))
            await app.state.redis.aclose()

    app = create_service_app(
        settings,
        title="gateway",
        description="Public entry of the platform: OpenAI-compatible API and web UI.",
        lifespan=lifespan,
        readyz=False,
    )
    app.include_router(api.router)
    return app
