"""The models the gateway serves, by kind, and the aliases that name them.

- chat: `auto` (the whole pipeline, router_svc), the models moe_svc lists and
  those of the external engines in `MODEL_ENGINES` (common/models.py), marked
  with their engine and without the platform's extensions;
- embedding: rag_svc's embedding model;
- image: creative_svc's image models.

An alias (`GATEWAY_MODEL_ALIASES`) names a served model, or the default
model of a kind (`default:chat`: `DEFAULT_MODEL`, else the first model
moe_svc lists; `default:embedding`, `default:image`). Each route resolves the model it is
sent to one of its own kind, or answers 404 `model_not_found`.

moe_svc's list is kept for `models_cache_s`; an id not in it asks moe_svc
again (at most once a second) before the answer is 404, so a model
renamed by a restart of moe_svc is found without waiting for the cache.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal, get_args

from common.contracts.creative import ImageModel
from common.contracts.rag import EMBEDDING_MODEL
from common.errors import BadRequest, NotFound, ServiceError
from common.http_client import ServiceClient
from common.models import ModelRegistry
from gateway.edge import upstream_timer
from gateway.schemas import AUTO_MODEL, GatewayModelCard, ModelKind

__all__ = [
    "DEFAULT_IMAGE_MODEL",
    "DEFAULT_TARGET_PREFIX",
    "IMAGE_MODELS",
    "ModelCatalogue",
]

logger = logging.getLogger("gateway.catalogue")

IMAGE_MODELS: tuple[str, ...] = get_args(ImageModel)
DEFAULT_IMAGE_MODEL = "diffusion"  # creative_svc's default
# An alias target `default:<kind>` names the default model of that kind.
DEFAULT_TARGET_PREFIX = "default:"

_STARTED = int(time.time())
_MISS_REFRESH_S = 1.0

_DESCRIPTIONS: dict[str, str] = {
    AUTO_MODEL: "The full pipeline: router, tools, retrieval, reasoning.",
    EMBEDDING_MODEL: "Sentence embeddings (rag_svc), 384 dimensions.",
    "diffusion": "Fashion-MNIST diffusion model (creative_svc), text-conditioned.",
    "gan": "Fashion-MNIST conditional GAN (creative_svc).",
}


def _card(model_id: str, kind: ModelKind) -> GatewayModelCard:
    metadata = {"description": _DESCRIPTIONS[model_id]} if model_id in _DESCRIPTIONS else {}
    # `auto` sends a message with an image to the core model's vision path
    modalities: list[Literal["text", "image"]] = (
        ["text", "image"] if model_id == AUTO_MODEL else ["text"]
    )
    return GatewayModelCard(
        id=model_id, created=_STARTED, kind=kind, metadata=metadata, input_modalities=modalities
    )


# Known without asking an upstream: the pipeline, rag_svc's and creative_svc's models.
_FIXED: dict[str, GatewayModelCard] = {
    card.id: card
    for card in (
        _card(AUTO_MODEL, "chat"),
        _card(EMBEDDING_MODEL, "embedding"),
        *(_card(model, "image") for model in IMAGE_MODELS),
    )
}


def _model_not_found(model: str, kind: ModelKind | None, detail: str = "") -> NotFound:
    where = f" as a {kind} model" if kind is not None else ""
    return NotFound(
        f"The model {model!r} does not exist{where}{detail}; GET /v1/models lists the models "
        "served and their aliases.",
        param="model",
        code="model_not_found",
    )


class ModelCatalogue:
    """Every served model and alias; resolves what a request names (see the module)."""

    def __init__(
        self,
        moe: ServiceClient,
        aliases: dict[str, str],
        cache_s: float,
        timeout_s: float,
        models: ModelRegistry | None = None,
    ) -> None:
        """`models`: the registry whose external engines' models are listed too."""
        self.moe = moe
        self.models = models
        self._external = [
            GatewayModelCard(
                id=model,
                created=_STARTED,
                kind="chat",
                owned_by=engine,
                metadata={
                    "engine": engine,
                    "description": f"Served by the external engine {engine!r}: no expert "
                    "heatmap, token counts estimated where the engine gives none.",
                    "platform_extensions": False,
                },
            )
            for model, engine in (models.external_models() if models else {}).items()
        ]
        self.aliases = dict(aliases)
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._chat: list[GatewayModelCard] = []
        self._fetched_at = float("-inf")

    async def _moe_models(self, refresh: bool = False) -> list[GatewayModelCard]:
        """moe_svc's models (cached); raises moe_svc's error when it cannot be asked."""
        age = time.monotonic() - self._fetched_at
        if age < self.cache_s and not (refresh and age >= _MISS_REFRESH_S):
            return self._chat
        async with upstream_timer():
            listed = await self.moe.get_json(
                "/v1/models", timeout_s=self.timeout_s, idempotent=False
            )
        self._chat = [
            GatewayModelCard.model_validate({**card, "kind": "chat"})
            for card in listed.get("data", [])
            if card.get("id") != AUTO_MODEL
        ]
        self._fetched_at = time.monotonic()
        return self._chat

    def _default_chat(self) -> GatewayModelCard | None:
        default = self.models.default_model if self.models is not None else ""
        if default:
            return next((c for c in (*self._external, *self._chat) if c.id == default), None)
        return self._chat[0] if self._chat else None

    def _default_ids(self) -> dict[str, str]:
        defaults = {"embedding": EMBEDDING_MODEL, "image": DEFAULT_IMAGE_MODEL}
        chat = self._default_chat()
        if chat is not None:
            defaults["chat"] = chat.id
        return defaults

    def _with_aliases(self, card: GatewayModelCard) -> GatewayModelCard:
        default_targets = {f"{DEFAULT_TARGET_PREFIX}{kind}": model
                           for kind, model in self._default_ids().items()}  # fmt: skip
        names = [
            alias
            for alias, target in self.aliases.items()
            if default_targets.get(target, target) == card.id
        ]
        return card.model_copy(update={"aliases": names})

    async def list(self) -> list[GatewayModelCard]:
        """The cards of `GET /v1/models`, `auto` first, each with the aliases that reach it;
        moe_svc being down leaves its models out."""
        try:
            chat = await self._moe_models()
        except ServiceError as exc:
            logger.warning("moe_svc models unavailable", extra={"error": exc.message})
            chat = []
        fixed = list(_FIXED.values())
        # An id an engine serves is the engine's, even if moe_svc lists it too.
        external = {card.id for card in self._external}
        chat = [card for card in chat if card.id not in external]
        served = (fixed[0], *chat, *self._external, *fixed[1:])
        return [self._with_aliases(card) for card in served]

    async def resolve(self, model: str, kind: ModelKind | None = None) -> GatewayModelCard:
        """The served model of `kind` (None: any) that `model` names, or 404 `model_not_found`.

        An alias resolves to its target. A model that is not one of the fixed ones is
        asked of moe_svc: moe_svc down is then its 503, not a 404.
        """
        target = self.aliases.get(model, model)
        found = await self._lookup(target)
        if found is None:
            detail = f" (an alias of {target!r})" if target != model else ""
            raise _model_not_found(model, kind, detail)
        if kind is not None and found.kind != kind:
            raise _model_not_found(model, kind, f" (it is a {found.kind} model)")
        return self._with_aliases(found)

    async def named(self, raw: dict[str, Any], kind: ModelKind) -> dict[str, Any]:
        """A request body with its `model` resolved to the served id (absent: left absent)."""
        model = raw.get("model")
        if model is None:
            return raw
        if not isinstance(model, str):
            raise BadRequest("'model' must be a string.", param="model", code="invalid_model")
        return {**raw, "model": (await self.resolve(model, kind)).id}

    async def _lookup(self, target: str) -> GatewayModelCard | None:
        if target.startswith(DEFAULT_TARGET_PREFIX):
            kind = target.removeprefix(DEFAULT_TARGET_PREFIX)
            if kind == "chat":
                if self.models is None or self.models.route().platform:
                    await self._moe_models()  # the default is one of moe_svc's
                return self._default_chat()
            return _FIXED.get(self._default_ids().get(kind, ""))
        if target in _FIXED:
            return _FIXED[target]
        external = next((card for card in self._external if card.id == target), None)
        if external is not None:
            return external
        for refresh in (False, True):
            found = next(
                (card for card in await self._moe_models(refresh) if card.id == target), None
            )
            if found is not None:
                return found
        return None
