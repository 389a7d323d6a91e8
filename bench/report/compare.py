"""Whether a rerun of the report lands within the first run's printed spread.

    .venv/bin/python -m bench.report.compare docs/report/report.json /tmp/rerun/report/report.json

Every figure with a spread in the first run (accuracies: the 95% Wilson interval;
speeds and latencies: the range of the rounds) is looked up in the second; the
table says whether the rerun's value falls inside that spread, and the last line
counts them. Exit 1 when any figure falls outside.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.report.figures import Figure

__all__ = ["compare", "figures", "main", "table"]

FIELDS = {"value", "low", "high", "n", "spread"}


def figures(results: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Figure]]:
    """Every figure in the results, named by its path (`knowledge.rag`, ...)."""
    for key, value in results.items():
        if key == "meta" or not isinstance(value, dict):
            continue
        name = f"{prefix}{key}"
        if value.keys() >= FIELDS:
            yield name, Figure.from_dict(value)
        else:
            yield from figures(value, name + ".")


def compare(first: dict[str, Any], rerun: dict[str, Any]) -> list[tuple[str, Figure, float, bool]]:
    """(figure, the first run's figure, the rerun's value, within the first's spread) for
    every figure with a spread that both runs have."""
    again = dict(figures(rerun))
    rows = []
    for name, f in figures(first):
        if name in again:
            value = again[name].value
            rows.append((name, f, value, f.low - 1e-9 <= value <= f.high + 1e-9))
    return rows


def table(rows: list[tuple[str, Figure, float, bool]]) -> list[str]:
    lines = ["| figure | first run (spread) | rerun | within |", "|---|---|---|---|"]
    for name, f, value, ok in rows:
        lines.append(
            f"| {name} | {f.value:.3f} ({f.low:.3f}-{f.high:.3f}, {f.spread}) | {value:.3f} | "
            f"{'yes' if ok else '**no**'} |"
        )
    inside = sum(ok for *_, ok in rows)
    return [*lines, "", f"{inside} of {len(rows)} figures within the first run's spread"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="the run whose spreads are printed")
    parser.add_argument("rerun", type=Path, help="the rerun")
    args = parser.parse_args(argv)
    rows = compare(json.loads(args.first.read_text()), json.loads(args.rerun.read_text()))
    print("\n".join(table(rows)))
    return 0 if all(ok for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
