"""Refuse new plans while the core model sheds load, for as long as it asked.

moe_svc sheds a request it cannot start in time with 503 `overloaded` and a
`Retry-After` (its queue ahead times its recent pace). The first plans that
meet it fail with that answer; a stream has already sent its 200 and its
progress by then, so its caller only gets an SSE error. Every plan that
starts inside the `Retry-After` would queue behind the same backlog and most
likely be shed as well, after its caller waited. So the router remembers the
window and refuses, before anything starts, each plan that needs the core
model: a plain 503 `overloaded` with the `Retry-After` that is left, which
streaming and non-streaming callers (and the gateway, which passes it on)
see alike. Plans that do not need the model (a direct tool call) still run.

The core model is behind more steps than `moe.answer`: rag_svc's answers,
reasoning_svc's strategies and creative_svc's ideation are written by it,
and their shed calls come back with moe_svc as the error's origin.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from common.contracts.router import Plan
from common.errors import OVERLOADED, Overloaded, ServiceError, UpstreamError

__all__ = ["CORE_MODEL", "ShedWindow", "needs_core_model"]

CORE_MODEL = "moe_svc"
# Services whose answer the core model writes.
_GENERATING = frozenset({"moe_svc", "rag_svc", "reasoning_svc", "creative_svc"})
# The longest refusal one answer can start; moe_svc keeps its own estimate within this too.
MAX_WINDOW_S = 120.0


def needs_core_model(plan: Plan) -> bool:
    """Whether a step that always runs (no `when`) is written by the core model."""
    return any(step.when is None and step.service in _GENERATING for step in plan.steps)


class ShedWindow:
    """Until when the core model asked callers to stay away."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0

    def note(self, error: ServiceError) -> None:
        """Remember the window of a shed answer whose origin is the core model."""
        if error.code != OVERLOADED or not isinstance(error, UpstreamError):
            return
        if error.origin != CORE_MODEL:
            return
        try:
            wait = float(error.headers.get("Retry-After", ""))
        except ValueError:
            return
        if math.isfinite(wait) and wait > 0:
            self._until = max(self._until, self._clock() + min(wait, MAX_WINDOW_S))

    def check(self, plan: Plan) -> None:
        """Raise `Overloaded` (with the `Retry-After` left) for a plan the core model writes."""
        left = self._until - self._clock()
        if left > 0 and needs_core_model(plan):
            raise Overloaded(
                "The core model (moe_svc) is shedding load: this request was not started. "
                f"Retry in {math.ceil(left)} s (Retry-After).",
                retry_after_s=left,
            )
