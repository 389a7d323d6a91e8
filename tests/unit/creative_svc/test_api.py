"""The creative_svc API over ASGI with the committed weights: images, seeds, 4xx, ideation.

moe_svc is replaced by a scripted chat model; the generators are the real ones
(few denoising steps, to keep the tests quick).
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest
from PIL import Image

from creative_svc.app import create_app, load_studio
from creative_svc.imaging import ImageStudio
from creative_svc.settings import CreativeSettings
from tests.helpers.creative_fakes import ScriptedChat

FAST = {"steps": 4, "guidance_scale": 3.0}


@pytest.fixture(scope="module")
def studio() -> ImageStudio:
    return load_studio(CreativeSettings())


@asynccontextmanager
async def client_for(
    studio: ImageStudio | None,
    chat: ScriptedChat | None = None,
    settings: CreativeSettings | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings or CreativeSettings(), model=chat or ScriptedChat([]), studio=studio)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://creative") as client:
            yield client


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


async def _generate(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_generation_returns_a_png_of_the_size_asked_and_says_what_ran(
    studio: ImageStudio,
) -> None:
    async with client_for(studio) as client:
        body = await _generate(
            client,
            prompt="a red sneaker",
            size="512x512",
            seed=7,
            response_format="b64_json",
            **FAST,
        )
    raw = base64.b64decode(body["data"][0]["b64_json"])
    assert raw.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(raw))
    assert image.format == "PNG" and image.size == (512, 512)
    rgb = np.asarray(image.convert("RGB")).astype(int)
    assert rgb[..., 0].sum() > 2 * rgb[..., 2].sum()  # tinted red
    assert body["model"] == "diffusion" and body["seed"] == 7 and body["steps"] == 4
    reading = body["prompt_reading"]
    assert (reading["subject"], reading["style"], reading["nearest_class"]) == (
        "a sneaker",
        "red",
        "sneaker",
    )
    assert reading["in_domain"] and body["note"] is None


@pytest.mark.parametrize(
    "extra", [{"model": "diffusion"}, {"model": "diffusion", "sampler": "ddpm"}, {"model": "gan"}]
)
async def test_same_seed_gives_the_same_image_and_another_seed_a_different_one(
    studio: ImageStudio, extra: dict[str, str]
) -> None:
    async with client_for(studio) as client:
        request = {"prompt": "a dress", **FAST, **extra}
        first = await _generate(client, seed=11, **request)
        again = await _generate(client, seed=11, **request)
        other = await _generate(client, seed=12, **request)
    a, b, c = (_pixels(r["data"][0]["b64_json"]) for r in (first, again, other))
    assert np.array_equal(a, b)
    assert np.abs(a.astype(int) - c.astype(int)).mean() > 1.0


async def test_n_images_differ_and_the_first_is_the_single_image_of_that_seed(
    studio: ImageStudio,
) -> None:
    async with client_for(studio) as client:
        three = await _generate(client, prompt="a bag", n=3, seed=5, **FAST)
        one = await _generate(client, prompt="a bag", n=1, seed=5, **FAST)
    images = [_pixels(d["b64_json"]) for d in three["data"]]
    assert len(images) == 3
    assert np.abs(images[0].astype(int) - images[1].astype(int)).max() > 64
    # The same image: batching changes only float rounding (~1e-4 of a grey level before
    # quantisation), which can tip a pixel to the next level, a step the upscaling spreads.
    diff = np.abs(images[0].astype(int) - _pixels(one["data"][0]["b64_json"]).astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.05


async def test_a_request_without_seed_returns_the_seed_that_replays_it(studio: ImageStudio) -> None:
    async with client_for(studio) as client:
        first = await _generate(client, prompt="a coat", **FAST)
        replay = await _generate(client, prompt="a coat", seed=first["seed"], **FAST)
    assert first["data"][0]["b64_json"] == replay["data"][0]["b64_json"]


async def test_gan_answers_without_steps(studio: ImageStudio) -> None:
    async with client_for(studio) as client:
        body = await _generate(client, prompt="ankle boots", model="gan", seed=1)
    assert body["model"] == "gan" and body["steps"] is None and body["guidance_scale"] is None
    assert Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"]))).size == (256, 256)


async def test_a_prompt_outside_the_classes_gets_an_image_and_a_note(studio: ImageStudio) -> None:
    async with client_for(studio) as client:
        body = await _generate(client, prompt="a horse galloping", seed=3, **FAST)
    assert len(body["data"]) == 1
    assert not body["prompt_reading"]["in_domain"]
    assert "only knows ten kinds of clothing" in body["note"]
    assert "sneaker" in body["note"]  # the classes are listed


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"prompt": ""}, "prompt", "empty_prompt"),
        ({"prompt": "   \n "}, "prompt", "empty_prompt"),
        ({"prompt": "in pastel blue"}, "prompt", "no_subject"),
        ({"prompt": "qwzx vbnmk"}, "prompt", "unknown_prompt"),
        ({"prompt": "a dress", "n": 0}, "n", None),
        ({"prompt": "a dress", "n": 11}, "n", None),
        ({"prompt": "a dress", "size": "1792x1024"}, "size", None),
        ({"prompt": "a dress", "size": "100x100"}, "size", None),
        ({"prompt": "a dress", "steps": 251}, "steps", "too_many_steps"),
        ({"prompt": "a dress", "steps": 0}, "steps", None),
        ({"prompt": "a dress", "guidance_scale": -1}, "guidance_scale", None),
        ({"prompt": "a dress", "response_format": "url"}, "response_format", None),
        ({"prompt": "a dress", "model": "dall-e-3"}, "model", None),
        ({"prompt": "a dress" * 200}, "prompt", None),
        ({"n": 1}, "prompt", None),
    ],
)
async def test_bad_requests_get_a_400_naming_the_parameter(
    studio: ImageStudio, body: dict[str, Any], param: str, code: str | None
) -> None:
    async with client_for(studio) as client:
        response = await client.post("/v1/images/generations", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code
    assert error["message"]


JSON_IDEAS = json.dumps(
    {
        "ideas": [
            {
                "idea": "A coat that changes colour with the weather.",
                "visual": "a blue coat",
                "why": "It shows the forecast.",
            },
            {
                "idea": "A dress with reflective seams for dark evenings.",
                "visual": "a green dress",
                "why": "Safer night walks.",
            },
        ]
    }
)
IDEAS = (
    "Idea: A coat that changes colour with the weather\nVisual: a blue coat\n"
    "Why: it shows the forecast\n"
    "Idea: Sandals with built-in arch lights\nVisual: a neon green sandal\n"
    "Why: safer night walks\n"
)
CRITIQUE = "The coat idea is strongest; make the sandal lighter and add a matching bag."


async def test_ideate_asks_for_ideas_under_a_schema_draws_them_and_returns_the_critique(
    studio: ImageStudio,
) -> None:
    chat = ScriptedChat([JSON_IDEAS, CRITIQUE])
    async with client_for(studio, chat) as client:
        response = await client.post(
            "/v1/creative/ideate", json={"task": "rainy-day fashion", "n": 2, "seed": 4}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ideas_source"] == "model" and body["critique_source"] == "model"
    assert [i["visual_concept"] for i in body["ideas"]] == ["a blue coat", "a green dress"]
    assert [i["prompt_reading"]["nearest_class"] for i in body["ideas"]] == ["coat", "dress"]
    assert body["ideas"][0]["why"] == "It shows the forecast."
    for idea in body["ideas"]:
        assert Image.open(io.BytesIO(base64.b64decode(idea["image"]))).size == (256, 256)
    assert body["critique"] == CRITIQUE
    # One ideation call, under a schema asking for exactly two drawable ideas, one for each
    # of the two garments nearest the task (a coat, then a dress, for a rainy day).
    assert len(chat.calls) == 2 and chat.formats[1] is None
    assert "coat, dress" in chat.calls[0][-1]["content"]
    response_format = chat.formats[0]
    assert response_format is not None and response_format["type"] == "json_schema"
    schema = response_format["json_schema"]["schema"]
    jsonschema.validate(json.loads(JSON_IDEAS), schema)
    ideas = json.loads(JSON_IDEAS)["ideas"]
    for wrong in ([ideas[0]], [ideas[1], ideas[0]], [ideas[0], {**ideas[1], "visual": "a hat"}]):
        with pytest.raises(jsonschema.ValidationError):  # too few, swapped, not drawable
            jsonschema.validate({"ideas": wrong}, schema)
    # The critique call saw the ideas.
    assert "changes colour with the weather" in chat.calls[1][-1]["content"]


async def test_ideate_asks_again_in_labelled_lines_when_the_server_ignores_the_schema(
    studio: ImageStudio,
) -> None:
    chat = ScriptedChat([IDEAS, IDEAS, CRITIQUE])
    async with client_for(studio, chat) as client:
        response = await client.post(
            "/v1/creative/ideate", json={"task": "rainy-day fashion", "n": 2, "seed": 4}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ideas_source"] == "model"
    assert [i["visual_concept"] for i in body["ideas"]] == ["a blue coat", "a neon green sandal"]
    assert chat.formats[0] is not None and chat.formats[1] is None
    assert "Visual:" in chat.calls[1][-1]["content"]


async def test_ideate_unconstrained_asks_for_labelled_lines_only(studio: ImageStudio) -> None:
    chat = ScriptedChat([IDEAS, CRITIQUE])
    settings = CreativeSettings(ideate_constrained=False)
    async with client_for(studio, chat, settings=settings) as client:
        response = await client.post(
            "/v1/creative/ideate", json={"task": "rainy-day fashion", "n": 2, "seed": 4}
        )
    assert response.status_code == 200, response.text
    assert response.json()["ideas_source"] == "model"
    assert chat.formats == [None, None]


@pytest.mark.parametrize(
    "replies", [["I love fashion!", "Fashion is fun.", "ok"], [None, None, None]]
)
async def test_ideate_falls_back_when_the_model_rambles_or_is_down(
    studio: ImageStudio, replies: list[str | None]
) -> None:
    async with client_for(studio, ScriptedChat(replies)) as client:
        response = await client.post(
            "/v1/creative/ideate", json={"task": "a winter outfit", "n": 2, "seed": 1}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ideas_source"] == "fallback" and body["critique_source"] == "fallback"
    assert len(body["ideas"]) == 2
    assert all(i["image"] and i["description"] for i in body["ideas"])
    assert "winter outfit" in body["ideas"][0]["description"]
    assert body["critique"]


async def test_ideate_refuses_too_many_ideas(studio: ImageStudio) -> None:
    async with client_for(studio) as client:
        response = await client.post("/v1/creative/ideate", json={"task": "shoes", "n": 6})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "n"


async def test_missing_weights_make_the_service_not_ready_and_generation_503(
    tmp_path: Path,
) -> None:
    settings = CreativeSettings(weights_dir=tmp_path)
    async with client_for(None, settings=settings) as client:
        ready = await client.get("/readyz")
        response = await client.post("/v1/images/generations", json={"prompt": "a dress"})
    assert ready.status_code == 503
    assert ready.json()["checks"]["image_models"]["status"] == "down"
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "model_not_loaded"
