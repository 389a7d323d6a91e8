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

__all__ = ["figures", "main"]

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="the run whose spreads are printed")
    parser.add_argument("rerun", type=Path, help="the rerun")
    args = parser.parse_args(argv)
    first = json.loads(args.first.read_text())
    rerun = dict(figures(json.loads(args.rerun.read_text())))
    print("| figure | first run (spread) | rerun | within |")
    print("|---|---|---|---|")
    inside = outside = 0
    for name, f in figures(first):
        if name not in rerun:
            continue
        again = rerun[name].value
        ok = f.low - 1e-9 <= again <= f.high + 1e-9
        inside, outside = inside + ok, outside + (not ok)
        print(
            f"| {name} | {f.value:.3f} ({f.low:.3f}-{f.high:.3f}, {f.spread}) | {again:.3f} | "
            f"{'yes' if ok else '**no**'} |"
        )
    print(f"\n{inside} of {inside + outside} figures within the first run's spread")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
