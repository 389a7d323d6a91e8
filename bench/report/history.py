"""The timed figures' spreads over repeated runs, not only over one run's rounds.

Accuracies repeat exactly on a rerun (greedy decoding); speeds and latencies do not: on a
shared VM the whole machine runs 10-30% faster or slower from one run to the next, more
than the three rounds of one run differ. So a timed figure's printed spread is the range
of its rounds over this run and up to `RUNS - 1` runs before it (the reports it replaced,
same mode, kept in `meta.history`); its value stays this run's median round.
"""

from __future__ import annotations

from typing import Any

from bench.report.compare import figures

__all__ = ["RUNS", "pool"]

RUNS = 3  # this run and the two before it
ROUNDS = "range of rounds"


def _rounds_of(report: dict[str, Any]) -> dict[str, list[float]]:
    """A report's timed rounds by figure: recorded, or (a report from before they were
    recorded) its lowest, median and highest round, which are its three rounds."""
    recorded = report.get("meta", {}).get("rounds")
    if recorded:
        return {name: list(values) for name, values in recorded.items()}
    return {
        name: [f.low, f.value, f.high] for name, f in figures(report) if f.spread.startswith(ROUNDS)
    }


def _figure(results: dict[str, Any], name: str) -> dict[str, Any]:
    """The figure's own dict in `results` (changed in place by `pool`)."""
    node: Any = results
    for part in name.split("."):
        node = node[part]
    figure: dict[str, Any] = node
    return figure


def pool(results: dict[str, Any], previous: dict[str, Any] | None) -> None:
    """Widen `results`' timed spreads to the rounds of the runs before it (in place) and
    record the runs kept for the next report."""
    history: list[dict[str, list[float]]] = []
    if previous is not None:
        history = [*previous.get("meta", {}).get("history", []), _rounds_of(previous)]
    history = history[-(RUNS - 1) :] if RUNS > 1 else []
    results["meta"]["history"] = history
    for name, rounds in results["meta"]["rounds"].items():
        earlier = [run[name] for run in history if name in run]
        pooled = [*rounds, *(v for run in earlier for v in run)]
        figure = _figure(results, name)
        figure["low"], figure["high"], figure["n"] = min(pooled), max(pooled), len(pooled)
        runs = 1 + len(earlier)
        figure["spread"] = f"{ROUNDS} over {runs} run{'s' if runs > 1 else ''}"
