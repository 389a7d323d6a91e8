"""Gateway routes (thin: HTTP in, logic in named modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from common.caller import current_caller
from common.contracts.health import GatewayReadiness
from common.contracts.memory import (
    DpoPair,
    Feedback,
    FeedbackPage,
    FeedbackRequest,
    KtoExample,
)
from common.contracts.openai import ChatCompletionResponse
from common.contracts.rag import (
    CollectionCreate,
    CollectionInfo,
    CollectionList,
    CollectionUpdate,
    Deleted,
    EmbeddingsRequest,
    EmbeddingsResponse,
    IngestRequest,
    IngestResponse,
    SearchRequest,
    SearchResponse,
)
from common.errors import Forbidden
from common.openapi import error_responses, json_body, query_parameters
from gateway.deps import (
    CatalogueDep,
    ChatDep,
    ImagesDep,
    ImageStoreDep,
    ModelsDep,
    ProbeClientsDep,
    RedisDep,
    SettingsDep,
    UpstreamsDep,
    authorize,
)
from gateway.passthrough import (
    forward_documents,
    forward_json,
    forward_stream,
    read_json,
    read_query,
    upstream_path,
)
from gateway.readiness import platform_readiness
from gateway.rollout_routes import RolloutsDep
from gateway.schemas import (
    AutoCompletion,
    FeedbackExportQuery,
    FeedbackQuery,
    GatewayChatRequest,
    GatewayImageRequest,
    GatewayImagesResponse,
    GatewayModelCard,
    GatewayModelList,
)

__all__ = ["STATIC_DIR", "router", "v1"]

STATIC_DIR = Path(__file__).parent / "static"

# Documents arrive as JSON or as one uploaded file.
_INGEST_BODY = json_body(IngestRequest)
_INGEST_BODY["requestBody"]["content"]["multipart/form-data"] = {
    "schema": {
        "type": "object",
        "properties": {"file": {"type": "string", "format": "binary"}},
        "required": ["file"],
    }
}


def _line_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s schema for a line of a JSON-lines answer; the models it names (a
    `FeedbackTurn`) are components already, through `Feedback`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


router = APIRouter()
# Every /v1 route names its scope with `authorize`: key, scope and rate limits before the body.
v1 = APIRouter(prefix="/v1")


@router.get(
    "/readyz",
    response_model=GatewayReadiness,
    tags=["health"],
    responses={503: {"model": GatewayReadiness, "description": "Not ready: what is down."}},
)
async def readyz(
    probes: ProbeClientsDep,
    redis: RedisDep,
    settings: SettingsDep,
    models: ModelsDep,
    scope: Annotated[
        Literal["platform", "gateway"],
        Query(
            description="platform: every service and Redis (503 when any is down); gateway: "
            "only what the gateway needs to take requests (Redis), for an orchestrator's "
            "readiness probe that must not take the entry point out when one service is down."
        ),
    ] = "platform",
) -> JSONResponse:
    platform = scope == "platform"
    readiness = await platform_readiness(
        probes if platform else {},
        redis.ping,
        settings.readiness_timeout_s,
        models.engine_clients() if platform else {},
    )
    status = 200 if readiness.status == "ready" else 503
    return JSONResponse(readiness.model_dump(), status_code=status)


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


@router.get(
    "/images/{tenant}/{name}",
    tags=["openai"],
    response_class=FileResponse,
    responses={
        200: {"content": {"image/png": {}}, "description": "The image."},
        **error_responses(403),
    },
)
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
    responses={
        200: {
            "model": AutoCompletion | ChatCompletionResponse,
            "description": "The answer (`auto`: with its `pipeline`), or with `stream: true` "
            "server-sent `chat.completion.chunk` events ending in `data: [DONE]`.",
            "content": {"text/event-stream": {}},
        },
        **error_responses(404),
    },
    openapi_extra=json_body(GatewayChatRequest),
)
async def chat_completions(request: Request, chat: ChatDep, catalogue: CatalogueDep) -> Response:
    raw = await catalogue.named(await read_json(request), "chat")
    try:
        body = GatewayChatRequest.model_validate(raw)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    return await chat.create(request, body, raw)


@v1.post(
    "/embeddings",
    tags=["openai"],
    dependencies=[authorize("embeddings", prompt_tokens=True)],
    responses={200: {"model": EmbeddingsResponse}, **error_responses(404)},
    openapi_extra=json_body(EmbeddingsRequest),
)
async def embeddings(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep, catalogue: CatalogueDep
) -> Response:
    body = await catalogue.named(await read_json(request), "embedding")
    timeout = settings.passthrough_timeout_s
    return await forward_json(request, upstreams["rag_svc"], "/v1/embeddings", timeout, body=body)


@v1.post(
    "/images/generations",
    tags=["openai"],
    dependencies=[authorize("images")],
    responses=error_responses(404),
    openapi_extra=json_body(GatewayImageRequest),
)
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


@v1.get(
    "/collections",
    tags=["rag"],
    dependencies=[authorize("documents:read")],
    responses={200: {"model": CollectionList}},
)
async def list_collections(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    """The collections the key's tenant reaches: its own and the shared ones."""
    return await _to_rag(request, upstreams, settings, "/v1/collections", "GET")


@v1.post(
    "/collections",
    tags=["rag"],
    dependencies=[authorize("documents:write")],
    responses={201: {"model": CollectionInfo}, **error_responses(409)},
    openapi_extra=json_body(CollectionCreate),
)
async def create_collection(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    """A new collection of the key's tenant (`shared: true` needs an admin key)."""
    return await _to_rag(request, upstreams, settings, "/v1/collections")


@v1.patch(
    "/collections/{name}",
    tags=["rag"],
    dependencies=[authorize("documents:write")],
    responses={200: {"model": CollectionInfo}, **error_responses(409)},
    openapi_extra=json_body(CollectionUpdate),
)
async def update_collection(
    name: str, request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    """Share a collection with every tenant, or take it back (admin keys)."""
    template = "/v1/collections/{collection}"
    return await _to_rag(request, upstreams, settings, template, "PATCH", collection=name)


@v1.delete(
    "/collections/{name}",
    tags=["rag"],
    dependencies=[authorize("documents:write")],
    responses={200: {"model": Deleted}},
)
async def delete_collection(
    name: str, request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    template = "/v1/collections/{collection}"
    return await _to_rag(request, upstreams, settings, template, "DELETE", collection=name)


@v1.post(
    "/collections/{name}/search",
    tags=["rag"],
    dependencies=[authorize("documents:read")],
    responses={200: {"model": SearchResponse}},
    openapi_extra=json_body(SearchRequest),
)
async def search_collection(
    name: str, request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    template = "/v1/collections/{collection}/search"
    return await _to_rag(request, upstreams, settings, template, collection=name)


@v1.post(
    "/collections/{name}/documents",
    tags=["rag"],
    dependencies=[authorize("documents:write")],
    responses={200: {"model": IngestResponse}, **error_responses(415)},
    openapi_extra=_INGEST_BODY,
)
async def documents(
    name: str, request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    timeout = settings.passthrough_timeout_s
    return await forward_documents(request, upstreams["rag_svc"], name, timeout)


@v1.post(
    "/feedback",
    tags=["feedback"],
    dependencies=[authorize("feedback")],
    responses={201: {"model": Feedback}, 200: {"model": Feedback}, **error_responses(404)},
    openapi_extra=json_body(FeedbackRequest),
)
async def post_feedback(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep, rollouts: RolloutsDep
) -> Response:
    timeout = settings.passthrough_timeout_s
    body = await read_json(request)
    response = await forward_json(
        request, upstreams["memory_svc"], "/v1/feedback", timeout, body=body
    )
    # Stored (memory_svc checked it): it counts toward the version that wrote the answer.
    rated = FeedbackRequest.model_validate(body)
    await rollouts.record_rating(current_caller().tenant, rated.message_id, rated.rating)
    return response


@v1.get(
    "/feedback/export",
    tags=["feedback"],
    dependencies=[authorize("feedback")],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The caller's tenant's rated answers, one JSON object a line: "
            "KtoExample (format kto), DpoPair (dpo) or Feedback (raw).",
            "content": {
                "application/x-ndjson": {
                    "schema": {
                        "oneOf": [
                            _line_schema(KtoExample),
                            _line_schema(DpoPair),
                            {"$ref": "#/components/schemas/Feedback"},
                        ]
                    }
                }
            },
        },
        **error_responses(403),
    },
    openapi_extra=query_parameters(FeedbackExportQuery),
)
async def export_feedback(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    """The calling tenant's feedback as a training set (admin keys only)."""
    query = read_query(request, FeedbackExportQuery)
    if not current_caller().is_admin:
        raise Forbidden(
            "Exporting feedback needs an admin key of your tenant; ask an admin to run it "
            "or to create one (python -m gateway.admin create --role admin).",
            code="admin_required",
        )
    path = f"/v1/feedback/export?format={query.format}"
    return await forward_stream(upstreams["memory_svc"], path, settings.passthrough_timeout_s)


@v1.get(
    "/feedback",
    tags=["feedback"],
    dependencies=[authorize("feedback")],
    responses={200: {"model": FeedbackPage}},
    openapi_extra=query_parameters(FeedbackQuery),
)
async def get_feedback(
    request: Request, upstreams: UpstreamsDep, settings: SettingsDep
) -> Response:
    query = read_query(request, FeedbackQuery)
    timeout = settings.passthrough_timeout_s
    return await forward_json(
        request, upstreams["memory_svc"], "/v1/feedback", timeout, method="GET", query=query
    )
