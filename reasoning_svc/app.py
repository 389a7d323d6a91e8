"""The reasoning_svc app: `create_app(settings)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.service import create_service_app
from reasoning_svc.api import router
from reasoning_svc.llm import ChatModel
from reasoning_svc.reasoner import Reasoner
from reasoning_svc.settings import ReasoningSettings
from reasoning_svc.tools_client import ToolRunner, ToolsClient

__all__ = ["create_app"]


def create_app(
    settings: ReasoningSettings,
    *,
    model: ChatModel | None = None,
    tools: ToolRunner | None = None,
) -> FastAPI:
    """Build reasoning_svc; `model` and `tools` replace moe_svc and tools_svc (unit tests).

    It holds no model of its own: readiness is moe_svc's and tools_svc's
    (the shared upstream checks).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upstreams = app.state.upstreams
        app.state.reasoner = Reasoner(
            settings,
            model or app.state.models.chat(settings.model, settings.model_timeout_s),
            tools or ToolsClient(upstreams["tools_svc"], settings.tool_timeout_s),
            app.state.models,
        )
        yield

    app = create_service_app(
        settings,
        title="reasoning_svc",
        description="CoT, self-consistency, Tree-of-Thoughts, ReAct / agent loop, program-aided.",
        lifespan=lifespan,
    )
    app.include_router(router)
    return app
