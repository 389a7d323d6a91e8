"""Dependency aliases of tools_svc's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tools_svc.registry import ToolRegistry

__all__ = ["RegistryDep"]


def get_registry(request: Request) -> ToolRegistry:
    registry: ToolRegistry = request.app.state.registry
    return registry


RegistryDep = Annotated[ToolRegistry, Depends(get_registry)]
