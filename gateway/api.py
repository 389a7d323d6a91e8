"""Gateway routes (thin: HTTP in, logic in named modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import ValidationError

from common.contracts.health import GatewayReadiness
from gateway.chat import chat_completion
from gateway.passthrough import (
    forward_documents,
    forward_json,
    list_models,
    read_json,
    read_query,
    upstream_path,
)
from gateway.readiness import platform_readiness
from gateway.schemas import FeedbackQuery, GatewayChatRequest
from gateway.security import authorize

__all__ = ["STATIC_DIR", "router", "v1"]

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter()
# Every /v1 route names its scope with `authorize`: key, scope and rate limits before the body.
v1 = APIRouter(prefix="/v1")


@router.get("/readyz", response_model=GatewayReadiness, tags=["health"])
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    readiness = await platform_readiness(
        state.probe_clients, state.redis.ping, state.settings.readiness_timeout_s
    )
    status = 200 if readiness.status == "ready" else 503
    return JSONResponse(readiness.model_dump(), status_code=status)


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@v1.get("/models", tags=["openai"], dependencies=[authorize(None)])
async def models(request: Request) -> dict[str, Any]:
    return await list_models(request)


@v1.post(
    "/chat/completions",
    tags=["openai"],
    response_model=None,
    dependencies=[authorize("chat", prompt_tokens=True)],
)
async def chat_completions(request: Request) -> Any:
    raw = await read_json(request)
    try:
        body = GatewayChatRequest.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    return await chat_completion(request, body, raw)


@v1.post("/embeddings", tags=["openai"], dependencies=[authorize("embeddings", prompt_tokens=True)])
async def embeddings(request: Request) -> Response:
    timeout = request.app.state.settings.passthrough_timeout_s
    return await forward_json(request, "rag_svc", "/v1/embeddings", timeout)


@v1.post("/images/generations", tags=["openai"], dependencies=[authorize("images")])
async def images(request: Request) -> Response:
    timeout = request.app.state.settings.images_timeout_s
    return await forward_json(request, "creative_svc", "/v1/images/generations", timeout)


@v1.get("/collections", tags=["rag"], dependencies=[authorize("documents:read")])
async def list_collections(request: Request) -> Response:
    """The collections the key's tenant reaches: its own and the shared ones."""
    timeout = request.app.state.settings.passthrough_timeout_s
    return await forward_json(request, "rag_svc", "/v1/collections", timeout, method="GET")


@v1.post("/collections", tags=["rag"], dependencies=[authorize("documents:write")])
async def create_collection(request: Request) -> Response:
    """A new collection of the key's tenant (`shared: true` needs an admin key)."""
    timeout = request.app.state.settings.passthrough_timeout_s
    return await forward_json(request, "rag_svc", "/v1/collections", timeout)


@v1.patch("/collections/{name}", tags=["rag"], dependencies=[authorize("documents:write")])
async def update_collection(name: str, request: Request) -> Response:
    """Share a collection with every tenant, or take it back (admin keys)."""
    timeout = request.app.state.settings.passthrough_timeout_s
    path = upstream_path("/v1/collections/{collection}", collection=name)
    return await forward_json(request, "rag_svc", path, timeout, method="PATCH")


@v1.delete("/collections/{name}", tags=["rag"], dependencies=[authorize("documents:write")])
async def delete_collection(name: str, request: Request) -> Response:
    timeout = request.app.state.settings.passthrough_timeout_s
    path = upstream_path("/v1/collections/{collection}", collection=name)
    return await forward_json(request, "rag_svc", path, timeout, method="DELETE")


@v1.post("/collections/{name}/search", tags=["rag"], dependencies=[authorize("documents:read")])
async def search_collection(name: str, request: Request) -> Response:
    timeout = request.app.state.settings.passthrough_timeout_s
    path = upstream_path("/v1/collections/{collection}/search", collection=name)
    return await forward_json(request, "rag_svc", path, timeout)


@v1.post("/collections/{name}/documents", tags=["rag"], dependencies=[authorize("documents:write")])
async def documents(name: str, request: Request) -> Response:
    return await forward_documents(request, name)


@v1.post("/feedback", tags=["feedback"], dependencies=[authorize("feedback")])
async def post_feedback(request: Request) -> Response:
    timeout = request.app.state.settings.passthrough_timeout_s
    return await forward_json(request, "memory_svc", "/v1/feedback", timeout)


@v1.get("/feedback", tags=["feedback"], dependencies=[authorize("feedback")])
async def get_feedback(request: Request) -> Response:
    query = read_query(request, FeedbackQuery)
    timeout = request.app.state.settings.passthrough_timeout_s
    return await forward_json(
        request, "memory_svc", "/v1/feedback", timeout, method="GET", query=query
    )
