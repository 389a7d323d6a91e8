"""Fixtures of tools_svc's unit tests: settings and the app, started, over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers.tools_fakes import AppClient, AppFactory, NoSandbox
from tools_svc.app import create_app
from tools_svc.sandbox import SandboxLimits
from tools_svc.settings import ToolsSettings


@pytest.fixture
def settings(tmp_path: Path) -> ToolsSettings:
    return ToolsSettings(
        data_dir=tmp_path,
        http_allowed_hosts=["example.com", "*.example.org", "127.0.0.1", "localhost"],
        max_output_chars=1000,
    )


@pytest.fixture
def app_client() -> AppFactory:
    """`async with app_client(settings, ...) as client`: the app, started, over ASGI."""

    @asynccontextmanager
    async def start(settings: ToolsSettings, **overrides: Any) -> AsyncIterator[AppClient]:
        overrides.setdefault("sandbox", NoSandbox(SandboxLimits()))
        app: FastAPI = create_app(settings, **overrides)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with AppClient(transport=transport, base_url="http://tools") as client:
                client.app = app
                yield client

    return start
