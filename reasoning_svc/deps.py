"""Dependency aliases of reasoning_svc's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from reasoning_svc.reasoner import Reasoner

__all__ = ["ReasonerDep"]


def get_reasoner(request: Request) -> Reasoner:
    reasoner: Reasoner = request.app.state.reasoner
    return reasoner


ReasonerDep = Annotated[Reasoner, Depends(get_reasoner)]
