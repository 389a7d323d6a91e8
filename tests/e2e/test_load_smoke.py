"""The load scenarios of `make load`, headless for a few seconds against `make up`'s platform.

Each of six Locust users starts at its own scenario (an `auto` turn in a session,
a streamed chat on the core model, a wiki search, embeddings, an image, an upload)
and takes the others in turn; the run stops spawning after a few seconds and lets
the requests in flight finish. Every scenario must have been answered, none with
a 5xx, and none left without an answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load.report import build_report
from bench.load.run import run_locust
from tests.helpers.platform import Launch

pytestmark = pytest.mark.e2e

SCENARIOS = {"auto", "stream", "search", "embeddings", "image", "upload"}


def test_every_scenario_is_answered_without_a_server_error(
    launch: Launch, key: str, tmp_path: Path
) -> None:
    records = run_locust(
        launch.gateway, key, stages="6:8", max_requests=200, timeout_s=90,
        log=tmp_path / "locust.log", user_class="EveryScenarioUser",
    )  # fmt: skip
    log = (tmp_path / "locust.log").read_text(errors="replace")[-3000:]
    answered = {r["scenario"].split(":")[0] for r in records if r["status"] == 200}
    assert answered >= SCENARIOS, f"not answered: {SCENARIOS - answered}\n{log}"
    server_errors = [r for r in records if r["status"] >= 500 or r["status"] == 0]
    assert not server_errors, f"5xx or no answer: {server_errors[:5]}\n{log}"
    stream = build_report(records, 0, 1)["scenarios"]["stream"]
    assert stream["ttft_p50_ms"] is not None and stream["tokens_per_s"], stream
