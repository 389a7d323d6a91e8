"""The moe_svc app: `create_app(settings)`."""

from __future__ import annotations

from fastapi import FastAPI

from common.service import create_service_app
from moe_svc.settings import MoeSettings

__all__ = ["create_app"]


def create_app(settings: MoeSettings) -> FastAPI:
    """Build the moe_svc app; its routes arrive with the issues that build them."""
    return create_service_app(
        settings,
        title="moe_svc",
        description=(
            "the core LLM: Mixture-of-Experts transformer, generation engine, OpenAI-compatible."
        ),
    )
