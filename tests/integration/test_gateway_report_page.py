"""The web UI's Report page in a real browser: the committed report and the live counters.

The gateway runs in front of `gateway_fakes` (whose moe_svc counters grow at each
read); the page must render docs/report.md's tables and charts as the gateway serves
them, and draw requests/s, tokens/s and the expert load from `/report/live`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright import sync_api

from tests.helpers.browser import chromium_page
from tests.helpers.servers import REPO_ROOT, RunningRedis, RunningServer
from tests.integration.gateway_support import gateway_stack

pytestmark = pytest.mark.integration

Stack = tuple[RunningServer, RunningServer, RunningRedis]
REPORT = REPO_ROOT / "docs" / "report.md"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(tmp_path_factory.mktemp("gateway_report")) as servers:
        yield servers


def test_the_report_files_are_served_and_nothing_else(stack: Stack) -> None:
    gateway = stack[0]
    served = httpx.get(f"{gateway.url}/report/files/report.md")
    assert served.status_code == 200
    assert served.text == REPORT.read_text()
    chart = httpx.get(f"{gateway.url}/report/files/report/throughput.png")
    assert chart.headers["content-type"] == "image/png"
    assert chart.content.startswith(b"\x89PNG")
    for name in ("..%2Fapp.py", "report.md", "x.txt"):
        missing = httpx.get(f"{gateway.url}/report/files/report/{name}")
        assert missing.status_code == 404
        assert missing.json()["error"]["service"] == "gateway"


def test_the_report_page_shows_the_tables_charts_and_live_counters(
    stack: Stack, tmp_path: Path
) -> None:
    gateway = stack[0]
    with chromium_page(tmp_path / "profile", viewport={"width": 1280, "height": 900}) as page:
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(gateway.url + "/")
        page.click("a.report-link")
        expect = sync_api.expect
        expect(page).to_have_url(gateway.url + "/report")
        report = page.locator("#report")
        expect(report.locator("h4", has_text="Success metrics")).to_be_visible()
        expect(report.locator("table").first).to_contain_text("HumanEval pass@1")
        images = report.locator("img")
        expect(images).to_have_count(6)
        page.wait_for_function(
            "[...document.querySelectorAll('#report img')].every(i => i.naturalWidth > 0)"
        )
        # Two polls make a rate; the fake's token counter grows between them.
        expect(page.locator("#live-tokens")).not_to_have_text("–", timeout=10_000)
        assert float(page.locator("#live-tokens").inner_text()) > 0
        expect(page.locator("#experts rect")).to_have_count(8)
        assert errors == []
