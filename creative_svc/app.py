"""The creative_svc app: `create_app(settings)`."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from anyio import to_thread
from fastapi import FastAPI

from common.health import ReadinessCheck
from common.service import create_service_app
from creative_svc.api import router
from creative_svc.conditioning import PromptEncoder
from creative_svc.generators import DiffusionGenerator, GanGenerator, ImageGenerator
from creative_svc.ideation import Ideator
from creative_svc.imaging import ImageStudio
from creative_svc.llm import ChatModel
from creative_svc.settings import CreativeSettings

__all__ = ["create_app", "load_studio"]

log = logging.getLogger(__name__)


def load_studio(settings: CreativeSettings) -> ImageStudio:
    """The prompt encoder and both generators from `settings.weights_dir` (no dataset needed)."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    generators: dict[str, ImageGenerator] = {
        "diffusion": DiffusionGenerator.load(
            settings.weights_path / "diffusion", settings.guidance_max_t
        ),
        "gan": GanGenerator.load(settings.weights_path / "gan"),
    }
    return ImageStudio(
        PromptEncoder.load(settings.threads),
        generators,
        max_steps=settings.max_steps,
        ood_threshold=settings.ood_threshold,
    )


def create_app(
    settings: CreativeSettings,
    *,
    model: ChatModel | None = None,
    studio: ImageStudio | None = None,
) -> FastAPI:
    """Build creative_svc; `model` replaces moe_svc, `studio` the loading (unit tests).

    Ready once the weights are loaded; moe_svc is only needed by ideation,
    which falls back without it, so it is not a required dependency.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.studio = None
        app.state.ideator = None

        async def models_loaded() -> None:
            if app.state.studio is None:
                raise RuntimeError(app.state.load_error or "weights not loaded")

        app.state.load_error = None
        app.state.readiness_checks.append(ReadinessCheck("image_models", models_loaded))
        try:
            loaded = (
                studio if studio is not None else await to_thread.run_sync(load_studio, settings)
            )
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            # Stay up and say why in /readyz rather than crash-looping.
            log.error("could not load the image models: %s", exc)
            app.state.load_error = f"{type(exc).__name__}: {exc}"
        else:
            app.state.studio = loaded
            chat = model or app.state.models.chat(settings.model, settings.model_timeout_s)
            app.state.ideator = Ideator(
                chat,
                loaded,
                steps=settings.default_steps,
                guidance_scale=settings.default_guidance_scale,
                max_tokens=settings.ideate_max_tokens,
                temperature=settings.ideate_temperature,
                constrained=settings.ideate_constrained,
            )
        yield

    app = create_service_app(
        settings,
        title="creative_svc",
        description="Diffusion (and GAN) image generation; ideation -> visuals -> critique.",
        lifespan=lifespan,
    )
    app.include_router(router)
    return app
