"""Images through the gateway with the real creative_svc: OpenAI's default size and URL format.

The gateway requires keys here; the signed URL it answers opens without one
until it expires, and the image is removed after that.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import openai
import pytest
from openai.types import ImagesResponse
from PIL import Image

from tests.helpers.servers import RunningServer, start_service
from tests.integration.gateway_support import admin, gateway_stack

URL_TTL_S = 4


class Gateway(NamedTuple):
    server: RunningServer
    images: Path  # where it keeps the images
    key: str  # of tenant acme, scope images


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    log_dir = tmp_path_factory.mktemp("gateway_images")

    def creative(fake: RunningServer) -> RunningServer:
        # Importing torch and diffusers and loading MiniLM can take a while on a busy machine.
        upstreams = {"moe_svc": fake.url}
        return start_service("creative_svc", log_dir, upstreams=upstreams, timeout_s=180)

    env = {"GATEWAY_AUTH_REQUIRED": "true", "GATEWAY_IMAGE_URL_TTL_S": str(URL_TTL_S)}
    with gateway_stack(log_dir, env, real={"creative_svc": creative}) as (gw, _, redis):
        key = admin(redis, "create", "--tenant", "acme", "--scopes", "images")
        yield Gateway(gw, log_dir / "gateway" / "gateway" / "images", key)


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> openai.OpenAI:
    base_url = f"{gateway.server.url}/v1"
    return openai.OpenAI(base_url=base_url, api_key=gateway.key, max_retries=0, timeout=120)


def test_default_size_and_url_format_round_trip(client: openai.OpenAI, gateway: Gateway) -> None:
    # What a client left at OpenAI's defaults sends: dall-e-2, 1024x1024, a URL back.
    result = client.images.generate(
        model="dall-e-2", prompt="a red dress", size="1024x1024", extra_body={"steps": 8}
    )
    ImagesResponse.model_validate(result.model_dump())
    assert (result.model_extra or {})["model"] == "diffusion"  # the model that drew it
    url = result.data[0].url if result.data else None
    assert url is not None and "/images/acme/" in url
    served = httpx.get(url)  # no API key
    assert served.status_code == 200
    image = Image.open(io.BytesIO(served.content))
    assert (image.format, image.size) == ("PNG", (1024, 1024))
    stored = list((gateway.images / "acme").glob("*.png"))
    assert len(stored) == 1

    expired_at = time.monotonic() + URL_TTL_S + 1
    while time.monotonic() < expired_at:
        time.sleep(0.5)
    refused = httpx.get(url)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "url_expired"
    deadline = time.monotonic() + URL_TTL_S * 2
    while any(path.exists() for path in stored) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert not any(path.exists() for path in stored)  # removed once no URL can reach it


def test_b64_json_and_a_refused_size(client: openai.OpenAI) -> None:
    result = client.images.generate(
        model="gan", prompt="a sneaker", size="512x512", response_format="b64_json"
    )
    assert result.data and result.data[0].b64_json and result.data[0].url is None
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="dall-e-3", prompt="a sneaker", size="1792x1024")
    assert caught.value.code == "invalid_size"
    assert "256x256, 512x512, 1024x1024" in str(caught.value)
