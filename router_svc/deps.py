"""Dependency aliases of router_svc's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from router_svc.dispatch import Dispatcher
from router_svc.route_decision import Router

__all__ = ["DispatcherDep", "RouterDep"]


def get_router(request: Request) -> Router:
    intent_router: Router = request.app.state.router
    return intent_router


def get_dispatcher(request: Request) -> Dispatcher:
    dispatcher: Dispatcher = request.app.state.dispatcher
    return dispatcher


RouterDep = Annotated[Router, Depends(get_router)]
DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
