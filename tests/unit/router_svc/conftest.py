"""Fixtures of router_svc's unit tests: the app over ASGI with a keyword classifier and
scripted upstreams."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from common.contracts.router import INTENTS
from router_svc.app import create_app
from router_svc.backends import Backends
from router_svc.dispatch import Dispatcher
from router_svc.intent_head import IntentHead
from router_svc.settings import RouterSettings
from tests.helpers.router_unit_fakes import FakeUpstreams, KeywordEmbedder

AppClient = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def settings(tmp_path: Path) -> RouterSettings:
    weights = tmp_path / "keyword_head.safetensors"
    # Keyword counts map straight to logits: one keyword gives a confident intent.
    head = IntentHead(INTENTS, np.eye(5, dtype=np.float32) * 8, np.zeros(5, np.float32))
    head.save(weights)
    return RouterSettings(data_dir=tmp_path, intent_weights=weights, max_total_chars=20_000)


@pytest.fixture
def fake() -> FakeUpstreams:
    return FakeUpstreams()


@pytest.fixture
def app_client(fake: FakeUpstreams) -> AppClient:
    @asynccontextmanager
    async def start(settings: RouterSettings, **_: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings, embedder=KeywordEmbedder())
        async with app.router.lifespan_context(app):
            app.state.dispatcher = Dispatcher(
                settings, app.state.router, Backends(fake.upstreams(), settings.model)
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
                yield client

    return start
