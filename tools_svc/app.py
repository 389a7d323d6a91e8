"""The tools_svc app: `create_app(settings)`."""

from __future__ import annotations

from fastapi import FastAPI

from common.service import create_service_app
from tools_svc.settings import ToolsSettings

__all__ = ["create_app"]


def create_app(settings: ToolsSettings) -> FastAPI:
    """Build the tools_svc app; its routes arrive with the issues that build them."""
    return create_service_app(
        settings,
        title="tools_svc",
        description=(
            "tool registry and sandboxed execution (code, calculator, search, HTTP, planner)."
        ),
    )
