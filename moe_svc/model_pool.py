"""The models one moe_svc serves: its base model, tuned versions beside it, the current one.

Each loaded model has its own engine on its own thread (`moe_svc.engine`: the
KV cache and batch belong to one model). A request is served by the current
model unless it names a version (`X-Model-Version`, which the gateway sets when
it rolls a candidate out to a share of its traffic). Every model answers under
the base model's public name, so that clients and the platform's services need
not know that a version is being tried; `GET /v1/versions` and the model card
say which version is current.

Changes (load, unload, promote, roll back) are serialised by one lock and
recorded in `serving.json` (`moe_svc.versions`) before they are answered.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import Conflict, NotFound
from moe_svc.serving import ModelServer
from moe_svc.versions import ServingState, VersionStore

__all__ = ["LoadServer", "ModelPool", "start_model_thread"]

logger = logging.getLogger("moe_svc.model_pool")

# Loads (blocking, seconds to minutes) a model directory as a served model under a label.
LoadServer = Callable[[Path, str], ModelServer]


def start_model_thread(
    load: Callable[[], ModelServer], name: str
) -> tuple[Future[ModelServer], threading.Thread]:
    """Load on a new thread (result or error into the future), then run its engine there."""
    ready: Future[ModelServer] = Future()

    def run() -> None:
        try:
            server = load()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(server)
        server.engine.run()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return ready, thread


@dataclass
class _Running:
    server: ModelServer
    thread: threading.Thread


class ModelPool:
    def __init__(
        self,
        base: ModelServer,
        base_thread: threading.Thread,
        store: VersionStore,
        load: LoadServer,
    ) -> None:
        self.base = base
        self.store = store
        self._load = load
        self._running: dict[str | None, _Running] = {None: _Running(base, base_thread)}
        self._state = ServingState()
        self._lock = asyncio.Lock()

    # ---- serving ----

    @property
    def current(self) -> ModelServer:
        return self._running[self._state.current].server

    @property
    def current_version(self) -> str | None:
        return self._state.current

    def server(self, version: str | None) -> ModelServer:
        """The model for a request naming `version` (None: the current one)."""
        if version is None:
            return self.current
        running = self._running.get(version)
        if running is None:
            raise NotFound(
                f"Model version {version!r} is not loaded on this server "
                "(GET /v1/versions lists the loaded ones).",
                code="model_version_not_loaded",
            )
        return running.server

    def servers(self) -> list[ModelServer]:
        return [running.server for running in self._running.values()]

    # ---- changes ----

    async def restore(self) -> None:
        """Serve what `serving.json` recorded: its current version and candidates."""
        state = self.store.read_state()
        async with self._lock:
            for version in [state.current, *state.candidates]:
                if version is not None:
                    try:
                        await self._ensure_loaded(version)
                    except Exception:
                        logger.exception(
                            "a recorded model version failed to load: not served",
                            extra={"version": version},
                        )
                        state.candidates = [v for v in state.candidates if v != version]
                        if state.current == version:
                            state.current = None
            self._state = state
            self.store.write_state(state)
        logger.info("serving", extra={"current": state.current, "candidates": state.candidates})

    async def load(self, version: str) -> ModelServer:
        """Load `version` beside the current model as a candidate (no-op when loaded)."""
        async with self._lock:
            server = await self._ensure_loaded(version)
            if version != self._state.current and version not in self._state.candidates:
                self._state.candidates.append(version)
                self.store.write_state(self._state)
            return server

    async def unload(self, version: str) -> None:
        """Stop serving a candidate (never the current model)."""
        async with self._lock:
            if version == self._state.current:
                raise Conflict(
                    f"Model version {version!r} is the current model: roll back first.",
                    code="model_version_current",
                )
            if version in self._state.candidates:
                self._state.candidates.remove(version)
                self.store.write_state(self._state)
            await self._stop(version)

    async def promote(self, version: str) -> None:
        """Make `version` the current model (it must have passed the eval gate)."""
        async with self._lock:
            self.store.check_gate(version)
            if version == self._state.current:
                return
            await self._ensure_loaded(version)
            previous = self._state.current
            self._state.history.append(previous)
            self._state.current = version
            self._state.candidates = [v for v in self._state.candidates if v != version]
            self.store.write_state(self._state)
            logger.info("model version promoted", extra={"version": version, "previous": previous})

    async def rollback(self) -> str | None:
        """Make the model current before the last promotion current again; returns it.

        The version rolled back from stops being served."""
        async with self._lock:
            if not self._state.history:
                raise Conflict(
                    "Nothing to roll back to: no model version was promoted on this server.",
                    code="nothing_to_roll_back",
                )
            previous = self._state.history[-1]
            if previous is not None:
                await self._ensure_loaded(previous)
            left = self._state.current
            self._state.history.pop()
            self._state.current = previous
            self.store.write_state(self._state)
            if left is not None:
                await self._stop(left)
            logger.info("model version rolled back", extra={"version": previous, "left": left})
            return previous

    def describe(self) -> dict[str, Any]:
        """What `GET /v1/versions` answers."""
        loaded = {v for v in self._running if v is not None}
        versions = []
        for version in self.store.ids():
            metadata = self.store.metadata(version)
            gate = metadata.get("gate")
            versions.append(
                {
                    "id": version,
                    "parent": metadata.get("parent"),
                    "created": metadata.get("created"),
                    "method": metadata.get("method"),
                    "loaded": version in loaded,
                    "current": version == self._state.current,
                    "gate": gate if isinstance(gate, dict) else None,
                }
            )
        return {
            "model": self.base.name,
            "current": self._state.current,
            "history": self._state.history,
            "candidates": self._state.candidates,
            "versions": versions,
        }

    def stop(self) -> list[threading.Thread]:
        """Stop every engine; the threads to join."""
        for running in self._running.values():
            running.server.engine.stop()
        return [running.thread for running in self._running.values()]

    # ---- internals (under the lock) ----

    async def _ensure_loaded(self, version: str) -> ModelServer:
        running = self._running.get(version)
        if running is not None:
            return running.server
        path = self.store.path(version)
        logger.info("loading model version", extra={"version": version, "path": str(path)})
        ready, thread = start_model_thread(
            lambda: self._load(path, version), name=f"moe-model-{version}"
        )
        server = await asyncio.wrap_future(ready)
        server.version = version
        self._running[version] = _Running(server, thread)
        logger.info("model version loaded", extra={"version": version})
        return server

    async def _stop(self, version: str) -> None:
        running = self._running.pop(version, None)
        if running is not None:
            running.server.engine.stop()
            await asyncio.to_thread(running.thread.join, 10.0)
            logger.info("model version unloaded", extra={"version": version})
