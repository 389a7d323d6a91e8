"""The router_svc app: `create_app(settings)`."""

from __future__ import annotations

from fastapi import FastAPI

from common.service import create_service_app
from router_svc.settings import RouterSettings

__all__ = ["create_app"]


def create_app(settings: RouterSettings) -> FastAPI:
    """Build the router_svc app; its routes arrive with the issues that build them."""
    return create_service_app(
        settings,
        title="router_svc",
        description="Intent classifier; plans and fans out to the services below it.",
    )
