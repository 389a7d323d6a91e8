"""The gateway app: `create_app(settings)`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from redis.exceptions import RedisError
from starlette.middleware import Middleware

from common.http_client import ServiceClient
from common.service import create_service_app
from gateway import api, report_page, rollout_routes
from gateway.catalogue import ModelCatalogue
from gateway.edge import EdgeMiddleware
from gateway.gatekeeper import Gatekeeper
from gateway.image_store import ImageStore, load_url_secret
from gateway.keys import KeyStore
from gateway.rollout_store import RolloutStore
from gateway.security import prepare_key_store
from gateway.settings import GatewaySettings

__all__ = ["create_app"]

logger = logging.getLogger("gateway.app")

_KEY_STORE_RETRY_S = 2.0


async def _prepare_keys_when_redis_answers(store: KeyStore, settings: GatewaySettings) -> None:
    # Until then /v1 answers 503 (Redis unavailable): nothing is served without the store.
    while True:
        await asyncio.sleep(_KEY_STORE_RETRY_S)
        try:
            await prepare_key_store(store, settings)
            return
        except RedisError as exc:
            logger.warning("key store still unavailable", extra={"error": repr(exc)})


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build the gateway; `/readyz` aggregates the readiness of the platform."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = settings.readiness_timeout_s
        app.state.redis = aioredis.from_url(
            settings.redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
        app.state.gatekeeper = Gatekeeper(app.state.redis)
        app.state.rollouts = RolloutStore(app.state.redis)
        retry: asyncio.Task[None] | None = None
        try:
            await prepare_key_store(app.state.gatekeeper.store, settings)
        except RedisError as exc:
            logger.warning(
                "key store unavailable at start; migration and bootstrap key will follow",
                extra={"error": repr(exc)},
            )
            retry = asyncio.create_task(
                _prepare_keys_when_redis_answers(app.state.gatekeeper.store, settings)
            )
        app.state.catalogue = ModelCatalogue(
            app.state.upstreams["moe_svc"],
            settings.model_aliases,
            cache_s=settings.models_cache_s,
            timeout_s=settings.models_timeout_s,
            models=app.state.models,
        )
        app.state.image_store = ImageStore(
            settings.data_dir / "gateway" / "images",
            load_url_secret(settings),
            settings.image_url_ttl_s,
        )
        cleanup = asyncio.create_task(app.state.image_store.clean_up_forever())
        # Probe-only clients: readiness must not trip the call clients' breakers.
        app.state.probe_clients = {
            name: ServiceClient(name, url, connect_timeout_s=timeout)
            for name, url in settings.service_urls().items()
        }
        try:
            yield
        finally:
            for task in (retry, cleanup):
                if task is not None:
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
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
    app.include_router(rollout_routes.router)
    app.include_router(report_page.router)
    app.mount("/static", StaticFiles(directory=api.STATIC_DIR), name="static")
    return app
