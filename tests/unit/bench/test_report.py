"""The report card's arithmetic and its committed page: intervals, spreads, and a
docs/report.md that is exactly what its results render to (no figure typed by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.report import compare, docs_sync, history
from bench.report.figures import Figure, of_runs, proportion, wilson
from bench.report.render import render
from tests.helpers.servers import REPO_ROOT

DOCS = REPO_ROOT / "docs"


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (38, 40, 0.8350, 0.9862),
    ],
)
def test_wilson_matches_the_published_interval(
    successes: int, n: int, low: float, high: float
) -> None:
    assert wilson(successes, n) == pytest.approx((low, high), abs=1e-4)


def test_a_proportion_carries_its_sample_and_interval() -> None:
    figure = proportion(3, 12)
    assert figure.value == 0.25 and figure.n == 12
    assert figure.low < 0.25 < figure.high
    assert Figure.from_dict(figure.as_dict()) == figure


def test_repeated_rounds_give_the_median_and_their_range() -> None:
    figure = of_runs([41.0, 44.5, 39.0])
    assert (figure.value, figure.low, figure.high, figure.n) == (41.0, 39.0, 44.5, 3)


def test_the_committed_report_is_what_its_results_render_to() -> None:
    results = json.loads((DOCS / "report" / "report.json").read_text())
    assert results["meta"]["mode"] == "full", "commit a full run's report"
    assert (DOCS / "report.md").read_text() == render(results, "report")
    for name in ("throughput", "latency", "expert_load", "retrieval", "reasoning", "timeline"):
        png = (DOCS / "report" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) < 150_000, name


def test_the_docs_quote_the_committed_report_and_nothing_older() -> None:
    """docs/benchmarks.md carries the report's headline figures as generated from
    docs/report/report.json: a hand edit or a stale copy fails here."""
    results = json.loads((DOCS / "report" / "report.json").read_text())
    assert docs_sync.check(results) == []
    page = (DOCS / "benchmarks.md").read_text()
    rag = Figure.from_dict(results["knowledge"]["rag"])
    assert f"| Knowledge QA with RAG (model `auto`) | {rag.value:.2f} " in page
    assert results["meta"]["commit"] in page


def test_a_rerun_is_compared_with_the_first_runs_spread(tmp_path: Path) -> None:
    results = json.loads((DOCS / "report" / "report.json").read_text())
    first = tmp_path / "first.json"
    first.write_text(json.dumps(results))
    assert compare.main([str(first), str(first)]) == 0
    slower = json.loads(json.dumps(results))
    batch1 = slower["throughput"]["batch1"]
    batch1["value"] = batch1["low"] * 0.5  # a rerun at half the first run's slowest round
    rerun = tmp_path / "rerun.json"
    rerun.write_text(json.dumps(slower))
    assert compare.main([str(first), str(rerun)]) == 1


def test_timed_spreads_pool_the_rounds_of_the_runs_before() -> None:
    """A timed figure's spread covers its rounds in this run and the two runs before it;
    its value stays this run's median; accuracies keep their interval."""

    def run(
        rounds: list[float], history: list[dict[str, list[float]]] | None = None
    ) -> dict[str, Any]:
        figure = of_runs(rounds).as_dict()
        meta: dict[str, object] = {"rounds": {"gateway_overhead_ms": rounds}}
        if history is not None:
            meta["history"] = history
        return {
            "gateway_overhead_ms": figure,
            "intent": {"accuracy": proportion(9, 10).as_dict()},
            "meta": meta,
        }

    first, second, third, fourth = (
        run([2.0, 2.1, 2.2]),
        run([2.5, 2.6, 2.7]),
        run([1.5, 1.6, 1.7]),
        run([3.0, 3.1, 3.2]),
    )
    history.pool(first, None)
    history.pool(second, first)
    history.pool(third, second)
    figure = third["gateway_overhead_ms"]
    assert (figure["value"], figure["low"], figure["high"], figure["n"]) == (1.6, 1.5, 2.7, 9)
    assert figure["spread"] == "range of rounds over 3 runs"
    assert third["intent"]["accuracy"] == proportion(9, 10).as_dict()
    history.pool(fourth, third)  # the first run drops out: three runs at most
    assert fourth["gateway_overhead_ms"]["low"] == 1.5 and fourth["meta"]["history"][0] == {
        "gateway_overhead_ms": [2.5, 2.6, 2.7]
    }
