"""A three-hop test service built on `common`, run as a real uvicorn process.

`python -m tests.integration.chain_app` with CHAIN_NAME, CHAIN_PORT and
optionally CHAIN_NEXT_URL. Each hop forwards to the next through the shared
client; the last one answers. Used to check what crosses service boundaries:
request ids, error pass-through, streaming.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from pydantic_settings import SettingsConfigDict

from common.errors import NotFound, ServiceError
from common.request_context import current_request_id
from common.runner import serve
from common.service import create_service_app
from common.settings import ServiceSettings
from common.streaming import sse_passthrough


class ChainSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CHAIN_", extra="ignore")
    service_name: ClassVar[str] = "chain"

    port: int = 0  # set by the test through CHAIN_PORT
    next_url: str | None = None

    def upstream_urls(self) -> dict[str, str]:
        return {"next": self.next_url} if self.next_url else {}


class Echo(BaseModel):
    text: str
    count: int = 1


def create_app(settings: ChainSettings) -> FastAPI:
    name = settings.service_name
    app = create_service_app(settings, title=name)

    def next_hop(request: Request) -> Any:
        return request.app.state.upstreams["next"] if settings.next_url else None

    @app.get("/hop")
    async def hop(request: Request) -> dict[str, Any]:
        here = {"hop": name, "request_id": current_request_id()}
        client = next_hop(request)
        if client is None:
            return {**here, "downstream": None}
        return {**here, "downstream": await client.get_json("/hop")}

    @app.get("/fail/{status}")
    async def fail(request: Request, status: int) -> dict[str, Any]:
        client = next_hop(request)
        if client is not None:
            return dict(await client.get_json(f"/fail/{status}"))
        if status == 404:
            raise NotFound(f"widget missing at {name}", code="widget_missing")
        raise ServiceError(f"failure {status} at {name}", status_code=status)

    @app.post("/echo")
    async def echo(request: Request, body: Echo) -> dict[str, Any]:
        client = next_hop(request)
        if client is not None:
            return dict(await client.post_json("/echo", body.model_dump()))
        return {"text": body.text * body.count, "hop": name}

    @app.get("/slow")
    async def slow(s: float = 1.0) -> dict[str, Any]:
        await asyncio.sleep(min(s, 10.0))
        return {"hop": name, "slept": s}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail: password=hunter2")

    @app.get("/stream")
    async def stream(request: Request, n: int = 3) -> StreamingResponse:
        client = next_hop(request)
        if client is not None:
            return await sse_passthrough(client, "GET", f"/stream?n={n}")
        if n < 0:
            raise ServiceError("n must be >= 0", status_code=422, param="n")

        async def events() -> AsyncIterator[bytes]:
            for i in range(n):
                yield f'data: {{"i": {i}, "from": "{name}"}}\n\n'.encode()
                await asyncio.sleep(0.01)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def settings_from_env() -> ChainSettings:
    # The hop's name is its service name, so errors say which hop they came from.
    name = os.environ.get("CHAIN_NAME", "chain")
    settings_class = type(f"ChainSettings_{name}", (ChainSettings,), {"service_name": name})
    assert issubclass(settings_class, ChainSettings)
    return settings_class()


if __name__ == "__main__":
    serve(create_app, settings_from_env)
