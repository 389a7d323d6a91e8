"""moe_svc's routes: OpenAI chat/text completions, models, tokenize, expert statistics,
and the model versions served (list, load, unload, promote, roll back)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from common.contracts.model_versions import ServedVersions
from common.contracts.openai import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    TokenizeRequest,
    TokenizeResponse,
)
from common.disconnect import cancel_on_disconnect
from common.openapi import error_responses
from moe_svc.deps import AdminPoolDep, PoolDep, ServerDep
from moe_svc.engine import balance
from moe_svc.schemas import ExpertStatsResponse, LayerBalance
from moe_svc.serving import ModelServer
from moe_svc.versions import check_version_id

__all__ = ["router", "versions_router"]

# 404: a model this server does not serve (model_not_found).
router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/chat/completions", response_model=None, responses=error_responses(404))
async def chat_completions(
    body: ChatCompletionRequest, request: Request, server: ServerDep
) -> ChatCompletionResponse | Response:
    return await cancel_on_disconnect(request, server.chat(body))


@router.post("/completions", response_model=None, responses=error_responses(404))
async def completions(
    body: CompletionRequest, request: Request, server: ServerDep
) -> CompletionResponse | Response:
    return await cancel_on_disconnect(request, server.completion(body))


@router.get("/models")
async def models(server: ServerDep) -> ModelList:
    return ModelList(data=[_card(server)])


@router.get("/models/{model_id:path}")
async def model(model_id: str, server: ServerDep) -> ModelCard:
    server.check_model(model_id)
    return _card(server)


def _card(server: ModelServer) -> ModelCard:
    config = server.loaded.model.config
    return ModelCard(
        id=server.name,
        created=server.loaded.created,
        max_model_len=server.max_context,
        input_modalities=["text", "image"] if server.vision is not None else ["text"],
        metadata={
            "architecture": config.model_type,
            "num_experts": config.num_local_experts if config.is_moe else None,
            "experts_per_token": config.num_experts_per_tok if config.is_moe else None,
            "dtype": str(server.loaded.model.lm_head.weight.dtype).removeprefix("torch."),
            "activation_dtype": str(
                server.loaded.model.model.embed_tokens.weight.dtype
            ).removeprefix("torch."),
            "version": server.version,
        },
    )


@router.post("/tokenize", responses=error_responses(404))
async def tokenize(body: TokenizeRequest, server: ServerDep) -> TokenizeResponse:
    if body.model is not None:
        server.check_model(body.model)
    tokens = server.loaded.tokenizer.encode(body.text, body.add_special_tokens)
    return TokenizeResponse(tokens=tokens, count=len(tokens))


@router.get("/experts/stats")
async def expert_stats(server: ServerDep) -> ExpertStatsResponse:
    config = server.loaded.model.config
    routing = server.engine.routing
    stats = routing.to_dict() if routing is not None else {"tokens": 0, "counts": []}
    counts: list[list[int]] = stats["counts"]  # type: ignore[assignment]
    layers = [LayerBalance(**b) for b in balance(counts)]
    n = max(1, len(layers))
    return ExpertStatsResponse(
        model=server.name,
        num_layers=config.num_hidden_layers if config.is_moe else 0,
        num_experts=config.num_local_experts if config.is_moe else 0,
        top_k=config.num_experts_per_tok if config.is_moe else 0,
        tokens=int(stats["tokens"]),  # type: ignore[call-overload]
        counts=counts,
        balance=layers,
        mean_cv=round(sum(b.cv for b in layers) / n, 4),
        mean_entropy=round(sum(b.entropy for b in layers) / n, 4) if layers else 1.0,
    )


versions_router = APIRouter(prefix="/v1/versions", tags=["versions"])


@versions_router.get("")
async def list_versions(pool: PoolDep) -> ServedVersions:
    return ServedVersions.model_validate(pool.describe())


@versions_router.post("/rollback", responses=error_responses(403, 409))
async def rollback_version(pool: AdminPoolDep) -> ServedVersions:
    """The model current before the last promotion becomes current again."""
    await pool.rollback()
    return ServedVersions.model_validate(pool.describe())


@versions_router.post("/{version}/load", responses=error_responses(400, 403, 404))
async def load_version(version: str, pool: AdminPoolDep) -> ServedVersions:
    """Load a version beside the current model (requests naming it are served by it)."""
    await pool.load(check_version_id(version))
    return ServedVersions.model_validate(pool.describe())


@versions_router.delete("/{version}", responses=error_responses(400, 403, 409))
async def unload_version(version: str, pool: AdminPoolDep) -> ServedVersions:
    """Stop serving a candidate version (its files stay)."""
    await pool.unload(check_version_id(version))
    return ServedVersions.model_validate(pool.describe())


@versions_router.post("/{version}/promote", responses=error_responses(400, 403, 404, 409))
async def promote_version(version: str, pool: AdminPoolDep) -> ServedVersions:
    """Make a version current; 409 unless its eval gate passed."""
    await pool.promote(check_version_id(version))
    return ServedVersions.model_validate(pool.describe())
