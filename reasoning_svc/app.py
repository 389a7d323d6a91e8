"""The reasoning_svc app: `create_app(settings)`."""

from __future__ import annotations

from fastapi import FastAPI

from common.service import create_service_app
from reasoning_svc.settings import ReasoningSettings

__all__ = ["create_app"]


def create_app(settings: ReasoningSettings) -> FastAPI:
    """Build the reasoning_svc app; its routes arrive with the issues that build them."""
    return create_service_app(
        settings,
        title="reasoning_svc",
        description="CoT, self-consistency, Tree-of-Thoughts, ReAct / agent loop, program-aided.",
    )
