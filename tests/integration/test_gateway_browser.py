"""The web UI in a real browser: Debian's chromium driven by playwright.

The gateway runs in front of `gateway_fakes`; the test loads `/`, asks a
question, watches the answer stream in, opens the pipeline panel, rates the
answer and checks that the rating reached `/v1/feedback`, then reloads and
finds the conversation again. A screenshot lands in `tests/artifacts/`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright import sync_api

from tests.helpers.browser import chromium_page
from tests.helpers.servers import REPO_ROOT, RunningRedis, RunningServer
from tests.integration.gateway_support import admin, gateway_stack

ARTIFACTS = REPO_ROOT / "tests" / "artifacts"

Stack = tuple[RunningServer, RunningServer, RunningRedis]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(tmp_path_factory.mktemp("gateway_browser")) as servers:
        yield servers


@pytest.fixture
def page(tmp_path: Path) -> Iterator[sync_api.Page]:
    with chromium_page(tmp_path / "chromium-profile", viewport={"width": 1280, "height": 860}) as p:
        yield p


def test_chat_streams_shows_the_pipeline_and_takes_feedback(
    stack: Stack, page: sync_api.Page
) -> None:
    gateway, fake, _ = stack
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(gateway.url + "/")
    expect = sync_api.expect
    # The health strip lists every service from /readyz (the fakes answer for five of them).
    expect(page.locator('#health .svc[data-service="router_svc"].up')).to_be_visible()
    expect(page.locator('#health .svc[data-service="tools_svc"].down')).to_be_visible()
    expect(page.locator("#model option")).to_have_count(2)

    page.fill("#prompt", "Who invented the telephone?")
    page.press("#prompt", "Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer).to_contain_text("Bell patented the telephone in 1876")
    # The sources under the answer: title, collection, snippet; each [n] links to its source.
    source = answer.locator(".answer-sources li")
    expect(source).to_have_count(1)
    expect(source).to_contain_text("Telephone")
    expect(source.locator(".badge")).to_have_text("wiki")
    expect(source).to_contain_text("Alexander Graham Bell patented")
    cite = answer.locator("a.cite").first
    expect(cite).to_have_text("[1]")
    assert cite.get_attribute("href") == f"#{source.get_attribute('id')}"
    cite.click()
    expect(source).to_have_class(re.compile("flash"))
    # The citation to no source was streamed, then taken out when the answer was verified.
    expect(answer).not_to_contain_text("[7]")

    panel = page.locator("#pipeline")
    expect(panel.locator("#intent")).to_have_text("factual")
    expect(panel.locator('.bar.top[data-intent="factual"]')).to_be_visible()
    expect(panel.locator(".sources li")).to_have_count(1)
    expect(panel).to_contain_text("citations to no source removed: [7]")
    expect(panel.locator(".steps li")).to_have_count(1)

    answer.locator(".feedback input").fill("clear and sourced")
    answer.locator(".feedback button", has_text="Good").click()
    expect(page.locator("#status")).to_contain_text("Thanks")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gateway_ui.png"), full_page=True)

    stored = httpx.get(f"{gateway.url}/v1/feedback").json()["data"]
    assert [(f["rating"], f["comment"]) for f in stored] == [(1, "clear and sourced")]
    assert stored[0]["message_id"].endswith("-assistant")
    sent = [r for r in httpx.get(f"{fake.url}/requests").json() if r["path"] == "/v1/dispatch"]
    assert sent[-1]["body"]["session_id"] == stored[0]["session_id"]
    assert sent[-1]["body"]["stream"] is True

    # The session survives a reload: the conversation and its pipeline come back.
    page.reload()
    expect(page.locator(".msg.user")).to_have_text("Who invented the telephone?")
    expect(page.locator("#pipeline #intent")).to_have_text("factual")
    expect(page.locator(".feedback button.chosen")).to_contain_text("Good")
    assert errors == []


def test_the_key_field_appears_when_auth_is_on(
    tmp_path_factory: pytest.TempPathFactory, page: sync_api.Page
) -> None:
    log_dir = tmp_path_factory.mktemp("gateway_browser_auth")
    with gateway_stack(log_dir, {"GATEWAY_AUTH_REQUIRED": "true"}) as (gateway, _, redis):
        key = admin(redis, "create", "--name", "browser")
        page.goto(gateway.url + "/")
        expect = sync_api.expect
        field = page.locator("#key-field")
        expect(field).to_be_visible()
        expect(field).to_have_class(re.compile("attention"))
        expect(page.locator("#status")).to_contain_text("API key")
        page.fill("#api-key", key)
        page.press("#api-key", "Tab")
        expect(page.locator("#model option")).to_have_count(2)
        expect(field).not_to_have_class(re.compile("attention"))
        page.fill("#prompt", "Who invented the telephone?")
        page.press("#prompt", "Enter")
        answer = page.locator(".msg.assistant").last
        expect(answer).to_contain_text("Bell patented the telephone in 1876")
