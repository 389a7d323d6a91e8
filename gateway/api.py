"""Gateway routes (thin: HTTP in, logic in named modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import ValidationError

from common.contracts.health import GatewayReadiness
from gateway.deps import (
    CatalogueDep,
    ChatDep,
    ImagesDep,
    ImageStoreDep,
    ProbeClientsDep,
    RedisDep,
    SettingsDep,
    UpstreamsDep,
    authorize,
)
from gateway.passthrough import (
    forward_documents,
    forward_json,
    read_json,
    read_query,
    upstream_path,
)
from gateway.readiness import platform_readiness
from gateway.schemas import (
    FeedbackQuery,
    GatewayChatRequest,
    GatewayImagesResponse,
    GatewayModelCard,
    GatewayModelList,
)

__all__ = ["STATIC_DIR", "router", "v1"]

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter()
# Every /v1 route names its scope with `authorize`: key, scope and rate limits before the body.
v1 = APIRouter(prefix="/v1")


@router.get("/readyz", response_model=GatewayReadiness, tags=["health"])
async def readyz(probes: ProbeClientsDep, redis: RedisDep, settings: SettingsDep) -> JSONResponse:
    readiness = await platform_readiness(probes, redis.ping, settings.readiness_timeout_s)
    status = 200 if readiness.status == "ready" else 503
    return JSONResponse(readiness.model_dump(), status_code=status)


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/images/{tenant}/{name}", tags=["openai"], response_class=FileResponse)
async def signed_image(
    tenant: str,
    name: str,
    store: ImageStoreDep,
    expires: Annotated[int, Query()],
    signature: Annotated[str, Query(max_length=128)],
) -> FileResponse:
    """A generated image, without an API key, while its signed URL is valid."""
    path = store.open(tenant, name, expires, signature)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private"})


@v1.get("/models", tags=["openai"], dependencies=[authorize(None)])
async def models(catalogue: CatalogueDep) -> GatewayModelList:
    """Every served model with its kind (chat, embedding, image) and its aliases."""
    return GatewayModelList(data=await catalogue.list())


@v1.get("/models/{model_id:path}", tags=["openai"], dependencies=[authorize(None)])
async def model(model_id: str, catalogue: CatalogueDep) -> GatewayModelCard:
    """One served model; an alias answers with the model it names."""
    return await catalogue.resolve(model_id)


@v1.post(
    "/chat/completions",
    tags=["openai"],
    response_model=None,
    dependencies=[authorize("chat", prompt_tokens=True)],
)
async def chat_completions(request: Request, chat: ChatDep, catalogue: CatalogueDep) -> Response:
    raw = await catalogue.named(await read_json(request), "chat")
    try:
        body = GatewayChatRequest.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    return await chat.create(request, body, raw)


@v1.post("/embeddings", tags=["openai"], dependencies=[authorize("embeddings", prompt_tokens=True)])
async def embeddings(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep, catalogue: CatalogueDep
) -> Response:
    body = await catalogue.named(await read_json(request), "embedding")
    timeout = settings.passthrough_timeout_s
    return await forward_json(request, upstreams["rag_svc"], "/v1/embeddings", timeout, body=body)


@v1.post("/images/generations", tags=["openai"], dependencies=[authorize("images")])
async def images(request: Request, generation: ImagesDep) -> GatewayImagesResponse:
    return await generation.create(request, await read_json(request))


async def _to_rag(
    request: Request,
    upstreams: UpstreamsDep,
    settings: SettingsDep,
    template: str,
    method: str = "POST",
    **names: str,
) -> Response:
    """Pass a collections call to rag_svc, its path names checked and encoded."""
    path = upstream_path(template, **names)
    timeout = settings.passthrough_timeout_s
    return await forward_json(request, upstreams["rag_svc"], path, timeout, method=method)


@v1.get("/collections", tags=["rag"], dependencies=[authorize("documents:read")])
async def list_collections(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    """The collections the key's tenant reaches: its own and the shared ones."""
    return await _to_rag(request, upstreams, settings, "/v1/collections", "GET")


@v1.post("/collections", tags=["rag"], dependencies=[authorize("documents:write")])
async def create_collection(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    """A new collection of the key's tenant (`shared: true` needs an admin key)."""
    return await _to_rag(request, upstreams, settings, "/v1/collections")


@v1.patch("/collections/{name}", tags=["rag"], dependencies=[authorize("documents:write")])
async def update_collection(
    name: str, request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    """Share a collection with every tenant, or take it back (admin keys)."""
    template = "/v1/collections/{collection}"
    return await _to_rag(request, upstreams, settings, template, "PATCH", collection=name)


@v1.delete("/collections/{name}", tags=["rag"], dependencies=[authorize("documents:write")])
async def delete_collection(
    name: str, request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    template = "/v1/collections/{collection}"
    return await _to_rag(request, upstreams, settings, template, "DELETE", collection=name)


@v1.post("/collections/{name}/search", tags=["rag"], dependencies=[authorize("documents:read")])
async def search_collection(
    name: str, request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    template = "/v1/collections/{collection}/search"
    return await _to_rag(request, upstreams, settings, template, collection=name)


@v1.post("/collections/{name}/documents", tags=["rag"], dependencies=[authorize("documents:write")])
async def documents(
    name: str, request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    timeout = settings.passthrough_timeout_s
    return await forward_documents(request, upstreams["rag_svc"], name, timeout)


@v1.post("/feedback", tags=["feedback"], dependencies=[authorize("feedback")])
async def post_feedback(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    timeout = settings.passthrough_timeout_s
    return await forward_json(request, upstreams["memory_svc"], "/v1/feedback", timeout)


@v1.get("/feedback", tags=["feedback"], dependencies=[authorize("feedback")])
async def get_feedback(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    query = read_query(request, FeedbackQuery)
    timeout = settings.passthrough_timeout_s
    return await forward_json(
        request, upstreams["memory_svc"], "/v1/feedback", timeout, method="GET", query=query
    )
