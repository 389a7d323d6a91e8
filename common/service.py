"""The app factory every service builds on: middleware, errors, health, upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from common.errors import install_error_handlers
from common.health import ReadinessCheck, install_health_routes, upstream_check
from common.input_guard import InputGuardMiddleware
from common.metrics import ServiceMetrics
from common.middleware import RequestContextMiddleware
from common.models import ModelRegistry
from common.openapi import document_errors
from common.settings import ServiceSettings
from common.upstreams import Upstreams

__all__ = ["create_service_app"]

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str = "",
    version: str = "0.1.0",
    lifespan: Lifespan | None = None,
    readyz: bool = True,
    edge: bool = False,
) -> FastAPI:
    """Build a service's FastAPI app with everything services share.

    On start-up `app.state.upstreams` holds a client per upstream (closed on
    shutdown) and `app.state.readiness_checks` an optional check per
    upstream; the service's own `lifespan` runs inside that and may append
    its own (required) checks, e.g. a loaded model or Redis. A service that
    asks the core model (its settings have `model_engines`) also gets
    `app.state.models`, its `ModelRegistry`, with a check per external engine
    (the default model's engine required). `edge` marks the public entry (see
    `RequestContextMiddleware`).
    """
    service = settings.service_name
    metrics = ServiceMetrics(service)

    @asynccontextmanager
    async def shared_lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstreams = Upstreams.from_settings(settings, metrics)
        app.state.upstreams = upstreams
        checks: list[ReadinessCheck] = [upstream_check(c) for c in upstreams]
        registry: ModelRegistry | None = None
        if hasattr(settings, "model_engines"):
            registry = ModelRegistry.from_settings(settings, upstreams["moe_svc"], metrics)
            checks += registry.readiness_checks()
        app.state.models = registry
        app.state.readiness_checks = checks
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            await upstreams.aclose()
            if registry is not None:
                await registry.aclose()

    app = FastAPI(title=title, description=description, version=version, lifespan=shared_lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app, service)
    # Inside the request context, so its 400s carry the request id and are logged.
    app.add_middleware(InputGuardMiddleware, service=service)
    app.add_middleware(RequestContextMiddleware, service=service, metrics=metrics, edge=edge)
    install_health_routes(app, service, metrics, readyz=readyz)
    document_errors(app, edge=edge)
    return app
