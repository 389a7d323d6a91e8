"""FastAPI dependencies: the components the lifespan built, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from memory_svc.components import Components

__all__ = ["ComponentsDep"]


def get_components(request: Request) -> Components:
    components: Components = request.app.state.memory
    return components


ComponentsDep = Annotated[Components, Depends(get_components)]
