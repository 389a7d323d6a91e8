"""Dependencies of the routes: the model server once it is loaded."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from common.errors import ServiceUnavailable
from moe_svc.serving import ModelServer

__all__ = ["ServerDep", "get_server"]


def get_server(request: Request) -> ModelServer:
    server: ModelServer | None = getattr(request.app.state, "model_server", None)
    if server is None:
        error = getattr(request.app.state, "model_error", None)
        message = f"The model failed to load: {error}" if error else "The model is still loading."
        raise ServiceUnavailable(message, code="model_loading", headers={"Retry-After": "5"})
    return server


ServerDep = Annotated[ModelServer, Depends(get_server)]
