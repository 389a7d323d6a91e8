"""The moe_svc app: `create_app(settings)`.

On start-up the model thread makes sure the model exists (building the default
one on first start, about a minute), loads it, and then runs the engine: load,
warm-up and every decoding step on that one thread (see `moe_svc.engine.engine`
on why). Then the model versions that `serving.json` records are loaded beside
it, each on a thread of its own (`moe_svc.model_pool`). Meanwhile `/healthz`
answers and `/readyz` says not ready, and the API answers 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import torch
from fastapi import FastAPI

from common.health import ReadinessCheck
from common.image_input import ImageLimits
from common.service import create_service_app
from moe_svc.api import router, versions_router
from moe_svc.build_default import MOE_NAME
from moe_svc.engine import Engine, EngineConfig, EngineMetrics
from moe_svc.loader import ensure_default_model, load_model
from moe_svc.model_pool import ModelPool, start_model_thread
from moe_svc.serving import ModelServer
from moe_svc.settings import MoeSettings
from moe_svc.structured import GrammarCompiler
from moe_svc.versions import VersionStore
from moe_svc.vision.adapter import DEFAULT_DIR as VISION_DIR
from moe_svc.vision.seeing import Vision

__all__ = ["create_app", "load_model_server"]

logger = logging.getLogger("moe_svc.app")


def load_model_server(
    settings: MoeSettings,
    metrics: EngineMetrics | None,
    path: Path | None = None,
    name: str | None = None,
) -> ModelServer:
    """Build (if needed) and load a model and its engine, warmed up: blocking, minutes.

    path: the model directory (default: the settings' one, or the default model, built
    on first use); name: the id it answers to (default: the settings' or its folder's).
    """
    torch.set_num_threads(settings.num_threads)
    if path is None:
        path = settings.model_dir
    if path is None:
        logger.info("checking the default model", extra={"dir": str(settings.data_dir / "models")})
        path = ensure_default_model(settings.data_dir / "models")
    loaded = load_model(
        path,
        settings.dtype,
        name or settings.served_model_name,
        settings.shared_experts,
        settings.decode_kernel,
    )
    engine = Engine(
        loaded.model,
        loaded.tokenizer,
        EngineConfig(
            max_batch_size=settings.max_batch_size,
            max_queue=settings.max_queue,
            max_queue_wait_s=settings.max_queue_wait_s,
            max_context=settings.max_context,
            prefill_tokens_per_step=settings.prefill_tokens_per_step,
        ),
        metrics,
    )
    engine.warm_up()
    grammars = GrammarCompiler(
        (loaded.path / "tokenizer.json").read_text(),
        loaded.model.config.vocab_size,
        sorted(loaded.stop_token_ids),
    )
    vision = None
    if settings.vision:
        vision = Vision.load(
            settings.vision_dir or VISION_DIR, loaded.model, ImageLimits.from_settings(settings)
        )
    return ModelServer(loaded, engine, settings.default_max_tokens, grammars, vision)


def create_app(settings: MoeSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.model_pool = None
        app.state.model_error = None

        async def model_loaded() -> None:
            if app.state.model_pool is None:
                raise RuntimeError(app.state.model_error or "loading")

        app.state.readiness_checks.append(ReadinessCheck("model", model_loaded))
        model_name = settings.served_model_name or (
            settings.model_dir.name if settings.model_dir else MOE_NAME
        )
        metrics = EngineMetrics(app.state.metrics.registry, model_name)
        store = VersionStore(settings.data_dir / "models" / "versions")
        ready, thread = start_model_thread(
            lambda: load_model_server(settings, metrics), name="moe-model"
        )

        def load_version(path: Path, version: str) -> ModelServer:
            # A version answers under the base model's name; its metrics say which it is.
            return load_model_server(
                settings, metrics.for_model(f"{model_name}@{version}"), path, model_name
            )

        async def load() -> None:
            try:
                server = await asyncio.wrap_future(ready)
                pool = ModelPool(server, thread, store, load_version)
                await pool.restore()
            except Exception as exc:
                logger.exception("model failed to load")
                app.state.model_error = f"{type(exc).__name__}: {exc}"
                return
            app.state.model_pool = pool
            logger.info("ready to serve", extra={"model": server.name})

        task = asyncio.create_task(load())
        try:
            yield
        finally:
            task.cancel()
            pool = app.state.model_pool
            threads = pool.stop() if pool is not None else []
            for running in threads:
                await asyncio.to_thread(running.join, 10.0)

    app = create_service_app(
        settings,
        title="moe_svc",
        description=(
            "the core LLM: Mixture-of-Experts transformer, generation engine, OpenAI-compatible."
        ),
        lifespan=lifespan,
    )
    app.include_router(router)
    app.include_router(versions_router)
    return app
