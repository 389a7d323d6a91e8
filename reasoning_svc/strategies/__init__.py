"""The reasoning strategies; each is `async def run(question, run) -> Outcome`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from common.contracts.reasoning import Strategy
from reasoning_svc.run import Outcome, Run
from reasoning_svc.strategies import pal, react, sampling, tot

__all__ = ["STRATEGY_RUNNERS", "StrategyRunner"]

StrategyRunner = Callable[[str, Run], Awaitable[Outcome]]

STRATEGY_RUNNERS: dict[Strategy, StrategyRunner] = {
    "direct": sampling.direct,
    "cot": sampling.cot,
    "self_consistency": sampling.self_consistency,
    "tot": tot.tree_of_thoughts,
    "react": react.react,
    "pal": pal.program_aided,
}
