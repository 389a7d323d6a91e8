"""Recording a plan's steps: a deadline each, latency and outcome recorded, failures contained.

`StepLog.run(step, coroutine, timeout_s=...)` awaits a `PlanStep`'s call
under its deadline and appends a `PipelineStep`. An optional step
that fails or runs out of time yields `None` (the plan degrades); a required
one raises the upstream's `ServiceError` (`UpstreamTimeout` past its
deadline), which the caller receives in the shared error shape. Skipped
steps are logged with the reason, so the pipeline names every planned step.

A turn has a budget as a whole (`TurnBudget`): each step's deadline is the
smaller of its own and what is left of the turn, and an optional step leaves
a reserve for the answer that replaces it when it fails. So a turn whose
steps are each within their bounds still ends within the turn's: answered,
or 504 `turn_timeout`, before a client's patience runs out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal, TypeVar

from common.contracts.router import PipelineStep, PlanStep
from common.errors import ServiceError, UpstreamTimeout

__all__ = ["StepLog", "TurnBudget"]

T = TypeVar("T")
logger = logging.getLogger("router_svc.step_log")


class TurnBudget:
    """The wall-clock time a turn has left, from its start."""

    def __init__(
        self,
        total_s: float,
        reserve_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total_s = total_s
        # Kept back from an optional step for the fallback that answers when it fails.
        self.reserve_s = reserve_s
        self._clock = clock
        self._deadline = clock() + total_s

    def left(self) -> float:
        return self._deadline - self._clock()

    def for_step(self, timeout_s: float, optional: bool) -> float:
        """A step's deadline: its own, cut to the turn's time left (less the reserve
        when optional); zero or less when nothing is left for it."""
        left = self.left() - (self.reserve_s if optional else 0.0)
        return min(timeout_s, left)


class StepLog:
    """The pipeline's steps in the order they finished; `on_step` hears of each one."""

    def __init__(
        self,
        on_step: Callable[[PipelineStep], Awaitable[None]] | None = None,
        budget: TurnBudget | None = None,
    ) -> None:
        self.steps: list[PipelineStep] = []
        self._on_step = on_step
        self.budget = budget

    def deadline(self, timeout_s: float, optional: bool) -> float:
        """The step's deadline within the turn's budget (its own without a budget)."""
        if self.budget is None:
            return timeout_s
        return self.budget.for_step(timeout_s, optional)

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
        """The call's result; None when an optional step fails (a required one raises).

        The deadline is `timeout_s` cut to the turn's budget; a step with no
        time left is not started (its coroutine is closed unawaited).
        """
        name, service, optional = step.name, step.service, step.optional
        started = time.perf_counter()
        deadline = self.deadline(timeout_s, optional)
        cut = deadline < timeout_s
        turn = self.budget.total_s if self.budget is not None else 0.0
        if deadline <= 0:
            if isinstance(call, Coroutine):
                call.close()
            error = f"not started: nothing was left of the turn's {turn:g}s budget"
            await self._failed(name, service, "timeout", optional, started, error)
            if optional:
                return None
            raise UpstreamTimeout(f"{name}: {error}.", code="turn_timeout")
        try:
            async with asyncio.timeout(deadline):
                result = await call
        except (TimeoutError, UpstreamTimeout) as exc:
            error = f"{service} did not answer within {deadline:.3g}s"
            if cut:
                error += f" (what was left of the turn's {turn:g}s budget)"
            await self._failed(name, service, "timeout", optional, started, error)
            if optional:
                return None
            code = "turn_timeout" if cut else "step_timeout"
            raise UpstreamTimeout(f"{name}: {error}.", code=code) from exc
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
