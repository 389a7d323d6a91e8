"""The gateway app: `create_app(settings)`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.middleware import Middleware

from common.http_client import ServiceClient
from common.service import create_service_app
from gateway import api
from gateway.edge import EdgeMiddleware
from gateway.security import Gatekeeper
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
        app.state.gatekeeper = Gatekeeper(app.state.redis)
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
        edge=True,
    )
    # Inside the shared request-context middleware (the list runs outermost first), so
    # that a 413 carries the request id; CORS outermost, so that errors carry its headers.
    app.user_middleware.append(
        Middleware(EdgeMiddleware, service="gateway", max_body_bytes=settings.max_body_bytes)
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "x-gateway-overhead-ms", "Retry-After"],
        )
    app.include_router(api.router)
    app.include_router(api.v1)
    app.mount("/static", StaticFiles(directory=api.STATIC_DIR), name="static")
    return app
