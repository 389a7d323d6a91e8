"""FastAPI dependencies of the gateway's routes: `authorize`, and what the lifespan built.

The aliases (`SettingsDep`, `UpstreamsDep`, ...) hand a route the components
that `gateway.app` keeps on the app; `authorize(scope)` is the route
dependency every `/v1` route declares, run before the body is read. The
getters are `async`: FastAPI would run plain functions in a worker thread,
a cost on every call of the platform's busiest service.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from redis.asyncio import Redis

from common.caller import Caller
from common.http_client import ServiceClient
from common.models import ModelRegistry
from common.upstreams import Upstreams
from gateway.catalogue import ModelCatalogue
from gateway.chat import ChatCompletions
from gateway.gatekeeper import Gatekeeper
from gateway.image_store import ImageStore
from gateway.images import ImageGeneration
from gateway.security import admit_caller
from gateway.settings import GatewaySettings

__all__ = [
    "CatalogueDep",
    "ChatDep",
    "GatekeeperDep",
    "ImageStoreDep",
    "ImagesDep",
    "ProbeClientsDep",
    "RedisDep",
    "SettingsDep",
    "UpstreamsDep",
    "authorize",
]


async def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_upstreams(request: Request) -> Upstreams:
    upstreams: Upstreams = request.app.state.upstreams
    return upstreams


async def get_gatekeeper(request: Request) -> Gatekeeper:
    gatekeeper: Gatekeeper = request.app.state.gatekeeper
    return gatekeeper


async def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


async def get_probe_clients(request: Request) -> dict[str, ServiceClient]:
    # Probe-only clients: readiness must not trip the call clients' breakers.
    clients: dict[str, ServiceClient] = request.app.state.probe_clients
    return clients


async def get_catalogue(request: Request) -> ModelCatalogue:
    catalogue: ModelCatalogue = request.app.state.catalogue
    return catalogue


async def get_image_store(request: Request) -> ImageStore:
    store: ImageStore = request.app.state.image_store
    return store


SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
UpstreamsDep = Annotated[Upstreams, Depends(get_upstreams)]
GatekeeperDep = Annotated[Gatekeeper, Depends(get_gatekeeper)]
RedisDep = Annotated[Redis, Depends(get_redis)]
ProbeClientsDep = Annotated[dict[str, ServiceClient], Depends(get_probe_clients)]
CatalogueDep = Annotated[ModelCatalogue, Depends(get_catalogue)]
ImageStoreDep = Annotated[ImageStore, Depends(get_image_store)]


async def get_models(request: Request) -> ModelRegistry:
    models: ModelRegistry = request.app.state.models
    return models


ModelsDep = Annotated[ModelRegistry, Depends(get_models)]


async def get_chat(
    request: Request,
    settings: SettingsDep,
    upstreams: UpstreamsDep,
    gatekeeper: GatekeeperDep,
    models: ModelsDep,
) -> ChatCompletions:
    return ChatCompletions(
        settings, upstreams["router_svc"], models, gatekeeper.limiter, request.app.state.rollouts
    )


ChatDep = Annotated[ChatCompletions, Depends(get_chat)]


async def get_images(
    settings: SettingsDep,
    upstreams: UpstreamsDep,
    catalogue: CatalogueDep,
    store: ImageStoreDep,
) -> ImageGeneration:
    return ImageGeneration(
        upstreams["creative_svc"], catalogue, store, settings.images_timeout_s, settings.public_base
    )


ImagesDep = Annotated[ImageGeneration, Depends(get_images)]


def authorize(scope: str | None, *, prompt_tokens: bool = False) -> Any:
    """The dependency every `/v1` route declares: a key with `scope` (None: any key).

    `prompt_tokens`: the body is a prompt whose estimated tokens count against
    the key's tokens per minute (see `gateway.security`).
    """

    async def dependency(
        request: Request, settings: SettingsDep, gatekeeper: GatekeeperDep
    ) -> Caller:
        return await admit_caller(request, settings, gatekeeper, scope, prompt_tokens)

    return Depends(dependency)
