"""Recording a plan's steps: a deadline each, latency and outcome recorded, failures contained.

`StepLog.run(step, coroutine, timeout_s=...)` awaits a `PlanStep`'s call
under its deadline and appends a `PipelineStep`. An optional step
that fails or runs out of time yields `None` (the plan degrades); a required
one raises the upstream's `ServiceError` (`UpstreamTimeout` past its
deadline), which the caller receives in the shared error shape. Skipped
steps are logged with the reason, so the pipeline names every planned step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

from common.contracts.router import PipelineStep, PlanStep
from common.errors import ServiceError, UpstreamTimeout

__all__ = ["StepLog"]

T = TypeVar("T")
logger = logging.getLogger("router_svc.step_log")


class StepLog:
    """The pipeline's steps in the order they finished; `on_step` hears of each one."""

    def __init__(self, on_step: Callable[[PipelineStep], Awaitable[None]] | None = None) -> None:
        self.steps: list[PipelineStep] = []
        self._on_step = on_step

    async def _record(self, step: PipelineStep) -> None:
        self.steps.append(step)
        if self._on_step is not None:
            await self._on_step(step)

    async def skip(self, step: PlanStep, reason: str) -> None:
        await self._record(
            PipelineStep(
                name=step.name,
                service=step.service,
                status="skipped",
                optional=step.optional,
                latency_ms=0.0,
                error=reason,
            )
        )

    def status(self, name: str) -> str | None:
        """The status `name` was recorded with (None before it is)."""
        return next((s.status for s in reversed(self.steps) if s.name == name), None)

    async def run(
        self,
        step: PlanStep,
        call: Awaitable[T],
        *,
        timeout_s: float,
        detail: Callable[[T], dict[str, Any]] | None = None,
    ) -> T | None:
        """The call's result; None when an optional step fails (a required one raises)."""
        name, service, optional = step.name, step.service, step.optional
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout_s):
                result = await call
        except (TimeoutError, UpstreamTimeout) as exc:
            error = f"{service} did not answer within {timeout_s:g}s"
            await self._failed(name, service, "timeout", optional, started, error)
            if optional:
                return None
            raise UpstreamTimeout(f"{name}: {error}.", code="step_timeout") from exc
        except ServiceError as exc:
            error = f"{exc.message} (HTTP {exc.status_code})"
            await self._failed(name, service, "failed", optional, started, error)
            if optional:
                return None
            raise
        latency = round((time.perf_counter() - started) * 1000, 1)
        await self._record(
            PipelineStep(
                name=name,
                service=service,
                status="ok",
                optional=optional,
                latency_ms=latency,
                detail=detail(result) if detail is not None else {},
            )
        )
        return result

    async def _failed(
        self,
        name: str,
        service: str,
        status: Literal["failed", "timeout"],
        optional: bool,
        started: float,
        error: str,
    ) -> None:
        logger.warning(
            "pipeline step failed",
            extra={"step": name, "upstream": service, "status": status, "error": error},
        )
        await self._record(
            PipelineStep(
                name=name,
                service=service,
                status=status,
                optional=optional,
                latency_ms=round((time.perf_counter() - started) * 1000, 1),
                error=error,
            )
        )
