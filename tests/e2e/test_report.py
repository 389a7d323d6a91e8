"""`python -m bench.report --quick` against the launched platform: the report CI keeps working.

The quick mode measures every section on small samples; the test checks that the
report has each section with real numbers in it, that every chart is a PNG, and that
the JSON beside it holds the figures the tables show.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.report.render import CHART_TITLES
from tests.helpers.platform import Launch
from tests.helpers.servers import REPO_ROOT

pytestmark = pytest.mark.e2e

SECTIONS = ["## Success metrics", "## The platform's own metrics", "## Charts", "## Details"]
SEED_ROWS = [
    "Knowledge QA, closed-book",
    "Knowledge QA, with RAG",
    "HumanEval pass@1",
    "Math: held-out word problems, `pal`",
    "Throughput, batch 1",
    "Cost per 1M tokens",
    "Context window",
]


def test_the_quick_report_measures_every_section(launch: Launch, key: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.report",
            "--quick",
            "--url",
            launch.gateway,
            "--key",
            key,
            "--out",
            str(tmp_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    print(f"bench.report --quick: {time.perf_counter() - started:.0f} s")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    report = (tmp_path / "report.md").read_text()
    for heading in SECTIONS:
        assert heading in report
    for row in SEED_ROWS:
        line = next(line for line in report.splitlines() if row in line)
        assert "**" in line and "nan" not in line, line
    for name in CHART_TITLES:
        png = tmp_path / "report" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"(report/{name})" in report

    results = json.loads((tmp_path / "report" / "report.json").read_text())
    batch1 = results["throughput"]["batch1"]
    assert batch1["value"] > 0 and batch1["low"] <= batch1["value"] <= batch1["high"]
    assert results["context"]["window"] > 0
    assert results["intent"]["accuracy"]["n"] > 0
    assert set(results["timelines"]) == {"factual", "reasoning", "creative", "tool", "chat"}
    for form in results["retrieval"].values():
        assert all(0 <= v <= 1 for k, v in form.items() if not k.endswith(" ms"))
    assert all(sum(map(sum, counts)) > 0 for counts in results["experts"].values())
    assert not math.isnan(results["cost"]["many"])
