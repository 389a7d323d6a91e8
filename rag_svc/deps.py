"""Dependency aliases of the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from rag_svc.answering import Answerer
from rag_svc.engine import RagEngine
from rag_svc.settings import RagSettings

__all__ = ["AnswererDep", "EngineDep", "SettingsDep"]


def get_engine(request: Request) -> RagEngine:
    engine: RagEngine = request.app.state.engine
    return engine


def get_answerer(request: Request) -> Answerer:
    answerer: Answerer = request.app.state.answerer
    return answerer


def get_settings(request: Request) -> RagSettings:
    settings: RagSettings = request.app.state.settings
    return settings


EngineDep = Annotated[RagEngine, Depends(get_engine)]
AnswererDep = Annotated[Answerer, Depends(get_answerer)]
SettingsDep = Annotated[RagSettings, Depends(get_settings)]
