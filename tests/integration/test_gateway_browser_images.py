"""Images in the web UI, in Debian's chromium driven by playwright.

The gateway runs in front of `gateway_fakes`; the tests pick the fake core model, so
that the request body the browser built reaches the fake as sent. They attach images
through the file input, a paste and a drop, check the thumbnails and the inline notes
for a file too many or unreadable, and check what reached the fake: OpenAI content parts
with PNGs at most 512 px on a side, and the images of earlier turns (the user's, and an
answer's drawing) in the history, the newest eight at most (the server's limit). A 400 of
the server shows its message in the thread.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright import sync_api

from tests.helpers.browser import chromium_page
from tests.helpers.gateway_fakes import MODEL, PNG_1X1
from tests.helpers.servers import RunningRedis, RunningServer
from tests.integration.gateway_support import gateway_stack

pytestmark = pytest.mark.integration

Stack = tuple[RunningServer, RunningServer, RunningRedis]
DATA_PNG = "data:image/png;base64,"
SESSION_KEY = "gateway.session.v1"  # app.js's STORE

# A session as the UI stores it after "draw a sneaker": the answer's drawing in its pipeline.
DREW_A_SNEAKER = {
    "id": "web-images-test",
    "model": "auto",
    "messages": [
        {"role": "user", "content": "draw a sneaker"},
        {"role": "assistant", "content": "Here is a sneaker.", "model": "auto",
         "pipeline": {"intent": "creative", "images": [{"b64_json": PNG_1X1}]}},
    ],
}  # fmt: skip

# Files handed to the page: a paste and a drop, as a user's browser would fire them.
DISPATCH_FILES = """([kind, files]) => {
  const data = new DataTransfer();
  for (const [name, type, b64] of files) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    data.items.add(new File([bytes], name, { type }));
  }
  const event = kind === "paste"
    ? new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true })
    : new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true });
  document.getElementById(kind === "paste" ? "prompt" : "messages").dispatchEvent(event);
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with gateway_stack(tmp_path_factory.mktemp("gateway_browser_images")) as servers:
        yield servers


@pytest.fixture
def page(tmp_path: Path) -> Iterator[sync_api.Page]:
    with chromium_page(tmp_path / "chromium-profile") as p:
        yield p


def _image(path: Path, size: tuple[int, int], image_format: str = "PNG") -> Path:
    Image.new("RGB", size, (200, 40, 40)).save(path, format=image_format)
    return path


def _png_url(size: tuple[int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size).save(buffer, format="PNG")
    return DATA_PNG + base64.b64encode(buffer.getvalue()).decode()


def _store_session(page: sync_api.Page, session: dict[str, Any]) -> None:
    """`session` in the UI's localStorage before the page loads (not again on a reload)."""
    key, stored = json.dumps(SESSION_KEY), json.dumps(json.dumps(session))
    page.add_init_script(f"if (!localStorage.getItem({key})) localStorage.setItem({key}, {stored})")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _sent_to_core_model(fake: RunningServer) -> dict[str, Any]:
    calls = httpx.get(f"{fake.url}/requests").json()
    body: dict[str, Any] = [c for c in calls if c["path"] == "/v1/chat/completions"][-1]["body"]
    return body


def _png_size(part: dict[str, Any]) -> tuple[int, int]:
    """The size of an image part's picture, which must be a PNG data URL."""
    assert part["type"] == "image_url"
    url = part["image_url"]["url"]
    assert url.startswith(DATA_PNG)
    with Image.open(io.BytesIO(base64.b64decode(url.removeprefix(DATA_PNG)))) as image:
        assert image.format == "PNG"
        return image.size


def _open_with_the_fake_model(page: sync_api.Page, gateway: RunningServer) -> None:
    page.goto(gateway.url + "/")
    sync_api.expect(page.locator("#model option")).to_have_count(2)
    page.select_option("#model", MODEL)


def test_images_go_as_content_parts_with_the_drawings_of_earlier_answers(
    stack: Stack, page: sync_api.Page, tmp_path: Path
) -> None:
    gateway, fake, _ = stack
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    _store_session(page, DREW_A_SNEAKER)
    _open_with_the_fake_model(page, gateway)
    expect = sync_api.expect
    expect(page.locator("#attach")).to_have_attribute("aria-label", "Attach images")

    # One picture and one file that is no picture: the picture waits as a thumbnail.
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture")
    page.set_input_files("#image-input", [_image(tmp_path / "wide.png", (1024, 640)), notes])
    thumbs = page.locator("#attachments img")
    expect(thumbs).to_have_count(1)
    expect(thumbs).to_have_attribute("alt", "wide.png")
    expect(page.locator("#attach-note")).to_contain_text(
        "notes.png was not added: it could not be read as an image"
    )
    page.fill("#prompt", "What is in this picture?")
    page.press("#prompt", "Enter")
    expect(page.locator(".msg.assistant").last).to_contain_text("Hello there")
    expect(page.locator(".msg.user").last.locator("img")).to_have_attribute("alt", "wide.png")
    expect(page.locator("#attachments img")).to_have_count(0)
    expect(page.locator("#attach-note")).to_be_hidden()

    drew, answer, asked = _sent_to_core_model(fake)["messages"]
    assert drew == {"role": "user", "content": "draw a sneaker"}
    # The earlier answer carries its drawing, after its text, so that it can be asked about.
    assert answer == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Here is a sneaker."},
            {"type": "image_url", "image_url": {"url": DATA_PNG + PNG_1X1}},
        ],
    }
    assert asked["role"] == "user"
    text, picture = asked["content"]
    assert text == {"type": "text", "text": "What is in this picture?"}
    assert _png_size(picture) == (512, 320)

    # A paste (a GIF, sent as a PNG), a drop and the file input: four at most, one removable.
    page.evaluate(
        DISPATCH_FILES,
        ["paste", [["a.gif", "image/gif", _b64(_image(tmp_path / "a.gif", (40, 30), "GIF"))]]],
    )
    expect(thumbs.first).to_have_attribute("alt", "pasted image")
    page.evaluate(
        DISPATCH_FILES,
        [
            "drop",
            [["tall.jpg", "image/jpeg", _b64(_image(tmp_path / "tall.jpg", (300, 900), "JPEG"))]],
        ],
    )
    expect(thumbs).to_have_count(2)
    extra = [_image(tmp_path / f"more{i}.png", (8, 8)) for i in range(3)]
    page.set_input_files("#image-input", extra)
    expect(thumbs).to_have_count(4)
    expect(page.locator("#attach-note")).to_have_text(
        "more2.png was not added: at most 4 images per message."
    )
    page.get_by_role("button", name="Remove more1.png").click()
    expect(thumbs).to_have_count(3)
    # Only images, no text: the message is its image parts alone.
    page.click("#send")
    expect(page.locator(".msg.assistant")).to_have_count(3)
    expect(page.locator(".msg.assistant").last).to_contain_text("Hello there")
    messages = _sent_to_core_model(fake)["messages"]
    assert messages[2] == asked
    assert [_png_size(part) for part in messages[-1]["content"]] == [(40, 30), (171, 512), (8, 8)]

    # The session keeps the pictures: after a reload the bubbles show them again.
    page.reload()
    expect(page.locator(".msg.user").last.locator("img")).to_have_count(3)
    expect(page.locator(".msg.user img").first).to_have_attribute("alt", "wide.png")
    assert errors == []


def test_a_refused_image_shows_the_servers_message(
    stack: Stack, page: sync_api.Page, tmp_path: Path
) -> None:
    gateway, _, _ = stack
    message = "The request has 9 images; at most 8 are accepted."
    error = {"message": message, "type": "invalid_request_error", "param": "messages",
             "code": "too_many_images"}  # fmt: skip
    page.route(
        "**/v1/chat/completions",
        lambda route: route.fulfill(status=400, json={"error": error}),
    )
    _open_with_the_fake_model(page, gateway)
    page.set_input_files("#image-input", [_image(tmp_path / "one.png", (16, 16))])
    page.fill("#prompt", "Describe it")
    page.press("#prompt", "Enter")
    refused = page.locator(".msg.assistant.error")
    sync_api.expect(refused).to_contain_text(f"{message} (400)")
    sync_api.expect(page.locator(".msg.user img")).to_have_attribute("alt", "one.png")
    sync_api.expect(page.locator("#send")).to_be_enabled()


def test_the_history_sends_again_the_newest_images_the_server_takes(
    stack: Stack, page: sync_api.Page, tmp_path: Path
) -> None:
    gateway, fake, _ = stack
    # Four earlier turns of three images each (sizes 1, 2 and 3 px), then one more image:
    # thirteen, and a request takes eight.
    turn = {
        "role": "user",
        "content": "",
        "images": [{"name": f"{k}px.png", "url": _png_url((k, k))} for k in (1, 2, 3)],
    }
    answer = {"role": "assistant", "content": "Seen.", "model": MODEL}
    _store_session(page, {"id": "web-many-images", "model": MODEL, "messages": [turn, answer] * 4})
    _open_with_the_fake_model(page, gateway)
    sync_api.expect(page.locator(".msg.user img")).to_have_count(12)
    page.set_input_files("#image-input", [_image(tmp_path / "last.png", (5, 5))])
    page.fill("#prompt", "And this one?")
    page.press("#prompt", "Enter")
    sync_api.expect(page.locator(".msg.assistant").last).to_contain_text("Hello there")

    users = [m["content"] for m in _sent_to_core_model(fake)["messages"] if m["role"] == "user"]
    # The oldest turn's images are left out (it says so); the next keeps its newest image.
    assert users[0] == "[image not sent again]"
    assert [_png_size(part) for part in users[1]] == [(3, 3)]
    assert [_png_size(part) for part in users[2]] == [(1, 1), (2, 2), (3, 3)]
    assert users[3] == users[2]
    assert users[4][0] == {"type": "text", "text": "And this one?"}
    assert [_png_size(part) for part in users[4][1:]] == [(5, 5)]
