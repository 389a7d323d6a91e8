"""creative_svc as a real process: an image our classifier recognises, ideation via a moe stand-in.

The service loads only the committed weights; the test judges its image with
the committed Fashion-MNIST classifier (`creative_svc/artefacts/judge`).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from PIL import Image

from creative_svc.captions import CLASS_NAMES
from creative_svc.judge import FashionJudge, image_to_judge_input
from creative_svc.settings import ARTEFACTS_DIR
from tests.helpers.servers import RunningServer, free_port, start_module, start_service

IDEAS = json.dumps(
    {
        "ideas": [
            {
                "idea": "A travel bag that unfolds into a picnic blanket.",
                "visual": "a beige bag",
                "why": "One object, two uses.",
            },
            {
                "idea": "Sandals with soles printed from recycled tyres.",
                "visual": "a black sandal",
                "why": "Waste becomes grip.",
            },
        ]
    }
)
CRITIQUE = "The bag is the more original idea; show the blanket pattern on its side."


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, RunningServer]]:
    log_dir: Path = tmp_path_factory.mktemp("creative")
    port = free_port()
    moe = start_module(
        "tests.helpers.creative_fake_moe",
        name="fake_moe",
        port=port,
        env={"FAKE_MOE_PORT": str(port), "FAKE_MOE_REPLIES": json.dumps([IDEAS, CRITIQUE])},
        log_dir=log_dir,
    )
    try:
        # Importing torch and diffusers and loading MiniLM can take a while on a busy machine.
        creative = start_service(
            "creative_svc", log_dir, upstreams={"moe_svc": moe.url}, timeout_s=180
        )
    except BaseException:
        moe.stop()
        raise
    yield {"creative": creative, "moe": moe}
    creative.stop()
    moe.stop()


def test_service_is_ready_with_its_weights_loaded(servers: dict[str, RunningServer]) -> None:
    body = httpx.get(f"{servers['creative'].url}/readyz", timeout=10).json()
    assert body["status"] == "ready"
    assert body["checks"]["image_models"]["status"] == "up"


def test_generated_image_is_a_png_of_the_size_asked_that_our_classifier_recognises(
    servers: dict[str, RunningServer],
) -> None:
    response = httpx.post(
        f"{servers['creative'].url}/v1/images/generations",
        json={"prompt": "a pair of trousers", "size": "256x256", "seed": 1, "steps": 25},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    raw = base64.b64decode(response.json()["data"][0]["b64_json"])
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(raw))
    image.verify()  # a complete, uncorrupted PNG
    image = Image.open(io.BytesIO(raw))
    assert image.format == "PNG" and image.size == (256, 256)
    judge = FashionJudge.load(ARTEFACTS_DIR / "judge")
    with torch.no_grad():
        predicted = CLASS_NAMES[int(judge(image_to_judge_input(image)).argmax())]
    assert predicted == "trouser"


def test_a_bad_request_is_a_400_in_the_shared_error_shape(
    servers: dict[str, RunningServer],
) -> None:
    response = httpx.post(
        f"{servers['creative'].url}/v1/images/generations",
        json={"prompt": "a dress", "steps": 10_000},
        headers={"X-Request-ID": "creative-test-1"},
        timeout=30,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "steps" and error["service"] == "creative_svc"
    assert error["request_id"] == "creative-test-1"


def test_ideate_asks_moe_for_ideas_draws_them_and_returns_its_critique(
    servers: dict[str, RunningServer],
) -> None:
    response = httpx.post(
        f"{servers['creative'].url}/v1/creative/ideate",
        json={"task": "gifts for travellers", "n": 2, "seed": 3},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ideas_source"] == "model" and body["critique"] == CRITIQUE
    assert [i["prompt_reading"]["nearest_class"] for i in body["ideas"]] == ["bag", "sandal"]
    for idea in body["ideas"]:
        assert Image.open(io.BytesIO(base64.b64decode(idea["image"]))).size == (256, 256)
    calls = httpx.get(f"{servers['moe'].url}/requests", timeout=5).json()
    assert len(calls) == 2 and calls[0]["model"] == "fake-moe"
    # The ideas were asked for under a JSON schema (moe_svc's constrained decoding).
    assert calls[0]["response_format"]["type"] == "json_schema"
    assert "response_format" not in calls[1]
    assert "gifts for travellers" in calls[0]["messages"][-1]["content"]
    assert "travel bag that unfolds" in calls[1]["messages"][-1]["content"]
