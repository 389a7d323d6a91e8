"""A measured figure with its spread, and the two ways the report gets a spread.

Accuracies are proportions of a sample, so their spread is a 95% Wilson score
interval over that sample (one run: greedy decoding repeats itself, a rerun
would only repeat the same answers). Speeds and latencies vary from run to run,
so they are measured in repeated rounds and their spread is the range of the
rounds (`of_runs`).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

__all__ = ["Figure", "of_runs", "proportion", "wilson"]

Z95 = 1.959964


@dataclass(frozen=True)
class Figure:
    value: float
    low: float
    high: float
    # Questions, problems or requests behind a proportion; rounds behind a run figure.
    n: int
    # How the spread was made, in words (the report prints it).
    spread: str

    def as_dict(self) -> dict[str, float | int | str]:
        return {
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "n": self.n,
            "spread": self.spread,
        }

    @classmethod
    def from_dict(cls, data: dict[str, float | int | str]) -> Figure:
        return cls(
            float(data["value"]),
            float(data["low"]),
            float(data["high"]),
            int(data["n"]),
            str(data["spread"]),
        )


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of `successes` out of `n` (0..1 when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / denominator
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(successes: int, n: int) -> Figure:
    low, high = wilson(successes, n)
    return Figure(successes / max(n, 1), low, high, n, "95% Wilson interval")


def of_runs(values: list[float]) -> Figure:
    """The median of repeated rounds, with their range as the spread."""
    return Figure(
        statistics.median(values), min(values), max(values), len(values), "range of rounds"
    )
