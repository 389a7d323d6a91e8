"""`POST /v1/images/generations`: creative_svc draws; the gateway names the model, hands out URLs.

The request's `model` is resolved by the catalogue (aliases such as
`dall-e-2`; an unknown one 404 `model_not_found`); `size` is one creative_svc
draws at (`IMAGE_SIZES`: 256x256, 512x512 and OpenAI's default 1024x1024, each
resized from the 28x28 the models draw), another a 400 listing them; OpenAI
options the platform does not implement are refused with a 400 rather than
ignored. creative_svc always answers in base64; with `response_format: "url"`
(OpenAI's default) the gateway stores each PNG for the caller's tenant and
answers a signed, expiring URL to it (`gateway.image_store`).
"""

from __future__ import annotations

import base64
from typing import Any, get_args

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from common.caller import current_caller
from common.contracts.creative import ImageGenerationResponse, ImageSize
from common.errors import BadRequest, BadUpstreamResponse
from common.http_client import ServiceClient
from gateway.catalogue import ModelCatalogue
from gateway.edge import upstream_timer
from gateway.image_store import ImageStore
from gateway.schemas import GatewayImageRequest, GatewayImagesResponse, ImageOut

__all__ = ["IMAGE_SIZES", "ImageGeneration"]

IMAGE_SIZES: tuple[str, ...] = get_args(ImageSize)

# OpenAI image options the platform does not implement, with the values that ask for nothing.
_UNSUPPORTED: dict[str, tuple[object, ...]] = {
    "quality": ("standard", "auto"),
    "style": (),
    "background": ("auto",),
    "output_format": ("png",),
    "output_compression": (),
    "moderation": ("auto",),
    "partial_images": (0,),
    "stream": (False,),
}


def _check_supported(body: GatewayImageRequest) -> None:
    extra = body.model_extra or {}
    for option, harmless in _UNSUPPORTED.items():
        if option in extra and extra[option] is not None and extra[option] not in harmless:
            raise BadRequest(
                f"'{option}' is not supported by the platform's image models"
                + (f" (only {', '.join(map(repr, harmless))})." if harmless else "."),
                param=option,
                code="unsupported_parameter",
            )
    if body.size is not None and body.size not in IMAGE_SIZES:
        raise BadRequest(
            f"Size {body.size!r} is not served; use one of {', '.join(IMAGE_SIZES)}.",
            param="size",
            code="invalid_size",
        )


class ImageGeneration:
    """Answers image requests with creative_svc, the model catalogue and the image store."""

    def __init__(
        self,
        creative: ServiceClient,
        catalogue: ModelCatalogue,
        store: ImageStore,
        timeout_s: float,
        public_base: str | None,
    ) -> None:
        self.creative = creative
        self.catalogue = catalogue
        self.store = store
        self.timeout_s = timeout_s
        self.public_base = public_base

    async def create(self, request: Request, raw: dict[str, Any]) -> GatewayImagesResponse:
        """Answer one `POST /v1/images/generations` body (see the module docstring)."""
        try:
            body = GatewayImageRequest.model_validate(raw)
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        _check_supported(body)
        payload = {**raw, "response_format": "b64_json"}
        if body.model is not None:
            payload["model"] = (await self.catalogue.resolve(body.model, "image")).id
        async with upstream_timer():
            reply = await self.creative.post_json(
                "/v1/images/generations", payload, timeout_s=self.timeout_s
            )
        try:
            drawn = ImageGenerationResponse.model_validate(reply)
        except ValidationError as exc:
            raise BadUpstreamResponse.from_validation("creative_svc", exc) from None
        if body.response_format == "b64_json":
            images = [
                ImageOut(b64_json=d.b64_json, revised_prompt=d.revised_prompt) for d in drawn.data
            ]
        else:
            base = self.public_base or str(request.base_url).rstrip("/")
            tenant = current_caller().tenant
            images = []
            for image in drawn.data:
                image_id = await self.store.save(tenant, base64.b64decode(image.b64_json))
                url = base + self.store.signed_path(tenant, image_id)
                images.append(ImageOut(url=url, revised_prompt=image.revised_prompt))
        return GatewayImagesResponse(**{**dict(drawn), "data": images})
