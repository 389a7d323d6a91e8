"""Dependency aliases of creative_svc's routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from common.errors import ServiceUnavailable
from creative_svc.ideation import Ideator
from creative_svc.imaging import ImageStudio
from creative_svc.settings import CreativeSettings

__all__ = ["IdeatorDep", "SettingsDep", "StudioDep"]


def get_studio(request: Request) -> ImageStudio:
    studio: ImageStudio | None = getattr(request.app.state, "studio", None)
    if studio is None:
        raise ServiceUnavailable("The image models are not loaded.", code="model_not_loaded")
    return studio


def get_ideator(request: Request) -> Ideator:
    ideator: Ideator | None = getattr(request.app.state, "ideator", None)
    if ideator is None:
        raise ServiceUnavailable("The image models are not loaded.", code="model_not_loaded")
    return ideator


def get_settings(request: Request) -> CreativeSettings:
    settings: CreativeSettings = request.app.state.settings
    return settings


StudioDep = Annotated[ImageStudio, Depends(get_studio)]
IdeatorDep = Annotated[Ideator, Depends(get_ideator)]
SettingsDep = Annotated[CreativeSettings, Depends(get_settings)]
