"""The web UI's "regenerate" and pick, in Debian's chromium driven by playwright.

The gateway runs in front of `gateway_fakes`: the test asks a question, asks it
again with "Regenerate", picks the first of the two answers, and checks what
reached the router (the same prompt, without the first answer) and
`/v1/feedback` (the pick, as a preference).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright import sync_api

from tests.helpers.browser import chromium_page
from tests.helpers.servers import RunningRedis, RunningServer
from tests.integration.gateway_support import gateway_stack

pytestmark = pytest.mark.integration

Stack = tuple[RunningServer, RunningServer, RunningRedis]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(tmp_path_factory.mktemp("gateway_regenerate")) as servers:
        yield servers


@pytest.fixture
def page(tmp_path: Path) -> Iterator[sync_api.Page]:
    with chromium_page(tmp_path / "chromium-profile") as p:
        yield p


def test_regenerate_asks_again_and_the_pick_is_stored_as_a_preference(
    stack: Stack, page: sync_api.Page
) -> None:
    gateway, fake, _ = stack
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(gateway.url + "/")
    expect = sync_api.expect
    page.fill("#prompt", "Who invented the telephone?")
    page.press("#prompt", "Enter")
    answers = page.locator(".msg.assistant")
    expect(answers.first).to_contain_text("Bell patented the telephone in 1876")

    answers.first.locator("button.regenerate").click()
    expect(answers).to_have_count(2)
    expect(answers.nth(1)).to_contain_text("Bell patented the telephone in 1876")
    # Only the newest answer offers to regenerate; both offer the pick.
    expect(page.locator("button.regenerate")).to_have_count(1)
    expect(page.locator("button.prefer")).to_have_count(2)
    answers.first.locator("button.prefer").click()
    expect(page.locator("#status")).to_contain_text("preference saved")
    expect(answers.first.locator("button.prefer")).to_contain_text("Preferred")

    dispatched = [
        r["body"] for r in httpx.get(f"{fake.url}/requests").json() if r["path"] == "/v1/dispatch"
    ]
    first, again = dispatched[-2:]
    assert (
        again["messages"]
        == first["messages"]
        == [{"role": "user", "content": "Who invented the telephone?"}]
    )
    assert again["session_id"] == first["session_id"]
    stored = httpx.get(f"{fake.url}/v1/feedback").json()["data"][-1]
    # The first answer (an earlier dispatch, dsp-<n>-assistant) picked over the second.
    assert stored["rating"] == 1
    picked, rejected = (int(stored[k].split("-")[1]) for k in ("message_id", "preferred_over"))
    assert picked < rejected
    assert errors == []
