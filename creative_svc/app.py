"""The creative_svc app: `create_app(settings)`."""

from __future__ import annotations

from fastapi import FastAPI

from common.service import create_service_app
from creative_svc.settings import CreativeSettings

__all__ = ["create_app"]


def create_app(settings: CreativeSettings) -> FastAPI:
    """Build the creative_svc app; its routes arrive with the issues that build them."""
    return create_service_app(
        settings,
        title="creative_svc",
        description="Diffusion (and GAN) image generation; ideation -> visuals -> critique.",
    )
