"""The core model sees images: the real gateway, router_svc and moe_svc with the default
model and its committed vision adapter (every other upstream a stand-in).

An image part reaches the vision path through `auto` whatever the text's intent, streamed
and not, through the `openai` client; an image request batched with text requests changes
neither's output; bad images are refused with a 400 before anything is stored or asked.
"""

from __future__ import annotations

import asyncio
import base64
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from creative_svc.captions import CLASS_NAMES
from creative_svc.fashion_data import load_split
from moe_svc.build_default import MOE_NAME
from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready
from tests.integration.gateway_support import UPSTREAMS, gateway_stack

QUESTION = "What is in this picture?"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """URLs of the gateway, moe_svc and the stand-in upstreams (memory among them)."""
    log_dir: Path = tmp_path_factory.mktemp("vision")
    started: dict[str, str] = {}

    def moe(_: RunningServer) -> RunningServer:
        env = {"MOE_DATA_DIR": str(REPO_ROOT / "var"), "MOE_DTYPE": "float32"}
        server = start_service("moe_svc", log_dir, env=env)
        wait_ready(server, timeout_s=600)
        started["moe_svc"] = server.url
        return server

    def router(fake: RunningServer) -> RunningServer:
        upstreams = {n: fake.url for n in (*UPSTREAMS, "reasoning_svc", "tools_svc")}
        upstreams.pop("router_svc", None)
        server = start_service(
            "router_svc",
            log_dir,
            upstreams={**upstreams, **started},
            env={"ROUTER_LOG_JSON": "false"},
        )
        wait_ready(server)
        return server

    with gateway_stack(log_dir, real={"moe_svc": moe, "router_svc": router}) as (gw, fake, _):
        yield {"gateway": gw.url, "moe": started["moe_svc"], "fake": fake.url}


def _data_url(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    mime = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}[fmt]
    return f"data:image/{mime};base64," + base64.b64encode(buffer.getvalue()).decode()


def _garment(label: int) -> Image.Image:
    """The first Fashion-MNIST test image of `label`, at 4x (the service resizes it back)."""
    images, labels = load_split("test")
    index = int((labels == label).nonzero()[0])
    pixels = ((images[index, 0] + 1) * 127.5).round().byte().numpy()
    return Image.fromarray(pixels, mode="L").resize((112, 112))


def _ask(url: str, text: str = QUESTION) -> Any:
    """A user turn of text and one image part (as the openai client's message params)."""
    parts = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "user", "content": parts}]


def _names(answer: str, label: int) -> bool:
    words = answer.lower().replace("t-shirt", "tshirt")
    name = CLASS_NAMES[label].replace("t-shirt", "tshirt")
    return name.split()[-1] in words


@pytest.fixture(scope="module")
def client(stack: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack["gateway"] + "/v1", api_key="unused", max_retries=0)


def test_auto_answers_about_the_picture_streamed_and_not(client: openai.OpenAI) -> None:
    trouser, sneaker = _garment(1), _garment(7)
    answer = client.chat.completions.create(
        model="auto",
        messages=_ask(_data_url(trouser)),
        max_tokens=16,
    )
    text = answer.choices[0].message.content or ""
    assert _names(text, 1), text
    pipeline = answer.model_extra["pipeline"] if answer.model_extra else {}
    assert "moe.answer" in [s["name"] for s in pipeline["steps"] if s["status"] == "ok"]

    # a question the classifier would send to the knowledge base still looks at the picture
    stream = client.chat.completions.create(
        model="auto",
        messages=_ask(_data_url(sneaker, "JPEG"), "Who makes this?"),
        max_tokens=16,
        stream=True,
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert streamed


def test_the_models_list_says_which_models_see_images(stack: dict[str, str]) -> None:
    listed = httpx.get(f"{stack['gateway']}/v1/models", timeout=30).json()["data"]
    modalities = {card["id"]: card.get("input_modalities") for card in listed}
    assert modalities["auto"] == ["text", "image"]
    assert modalities[MOE_NAME] == ["text", "image"]


async def _moe_chat(moe: str, messages: list[dict[str, Any]]) -> str:
    body = {"model": MOE_NAME, "messages": messages, "max_tokens": 16, "temperature": 0}
    async with httpx.AsyncClient(timeout=300) as http:
        response = await http.post(f"{moe}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def test_an_image_batched_with_text_requests_changes_neither(stack: dict[str, str]) -> None:
    moe = stack["moe"]
    picture = _ask(_data_url(_garment(8)))
    texts = [[{"role": "user", "content": t}] for t in ("Name three fruits.", "Say hello.")]

    async def alone() -> list[str]:
        return [await _moe_chat(moe, m) for m in (picture, *texts)]

    async def together() -> list[str]:
        return list(await asyncio.gather(*(_moe_chat(moe, m) for m in (picture, *texts))))

    first = asyncio.run(alone())
    assert _names(first[0], 8), first[0]
    assert asyncio.run(together()) == first


def _huge_png(width: int, height: int) -> bytes:
    """A valid PNG header and a tiny IDAT declaring width x height: never decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    idat = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def _gif_bomb() -> bytes:
    buffer = io.BytesIO()
    frames = [Image.new("L", (64, 64), i) for i in range(3)]
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    data = bytearray(buffer.getvalue())
    data[6:10] = (65535).to_bytes(2, "little") * 2  # the screen claims 65535 x 65535
    return bytes(data)


BAD = {
    "not an image": "data:image/png;base64," + base64.b64encode(b"just some text").decode(),
    "50 megapixels": "data:image/png;base64," + base64.b64encode(_huge_png(10_000, 5_000)).decode(),
    "gif bomb": "data:image/gif;base64," + base64.b64encode(_gif_bomb()).decode(),
    "loopback url": "http://127.0.0.1:1/cat.png",
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_image_is_a_400_and_nothing_else_happens(stack: dict[str, str], case: str) -> None:
    seen_before = len(httpx.get(f"{stack['fake']}/seen", timeout=10).json())
    response = httpx.post(
        f"{stack['gateway']}/v1/chat/completions",
        json={"model": "auto", "messages": _ask(BAD[case]), "session_id": "vision-bad"},
        timeout=60,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"].startswith("messages[0].content[1]"), error
    assert error["message"]
    # refused at the door: no memory write, no upstream asked
    assert len(httpx.get(f"{stack['fake']}/seen", timeout=10).json()) == seen_before
