"""The core model's vision path, served as users reach it: Fashion-MNIST test images asked
about through moe_svc's chat completions (the engine, batching and all), and the creative
round trip (text -> image -> caption).

    .venv/bin/python -m bench.vision_eval                 # 1000 test images (~10 min, 2 cores)
    .venv/bin/python -m bench.vision_eval --images 200    # quicker

- **Answer accuracy**: "What is in this picture?" answered greedily; right when the answer
  names the image's garment and no other. The ceiling in the same run is the encoder's
  own classification accuracy on the same images (its head, no language model).
- **Yes/no**: "Is this a {garment}?", half about the true garment and half about another.
- **Round trip**: creative_svc's diffusion model draws each garment from its two held-out
  evaluation prompts (`captions.EVAL_PROMPTS`), served as PNG at 256x256; the model's caption should
  name the prompted garment. Reference: the judge classifier's verdict on the same images.
- **Cost**: encoder + projector per image, the prompt tokens an image adds, the time to
  the first token with and without an image, and decode tokens/s after an image prompt.

Needs the dataset (`apt-get install -y dataset-fashion-mnist`) and the built default model
(`make up` builds it). Writes var/bench/vision/vision_eval.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from common.contracts.openai import ChatCompletionRequest, ChatCompletionResponse
from creative_svc.app import load_studio
from creative_svc.captions import CLASS_NAMES, EVAL_PROMPTS
from creative_svc.fashion_data import load_split
from creative_svc.imaging import GenerationJob
from creative_svc.judge import FashionJudge, image_to_judge_input
from creative_svc.settings import ARTEFACTS_DIR as CREATIVE_ARTEFACTS
from creative_svc.settings import CreativeSettings
from moe_svc.app import load_model_server
from moe_svc.serving import ModelServer
from moe_svc.settings import MoeSettings
from moe_svc.vision.labels import garment_named
from moe_svc.vision.preprocess import to_model_input

OUT = Path("var/bench/vision/vision_eval.json")
QUESTION = "What is in this picture?"


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_images(count: int) -> tuple[list[Image.Image], list[int]]:
    """`count` test images, the same number of each garment (the first of each in order)."""
    images, labels = load_split("test")
    chosen: list[int] = []
    for label in range(10):
        where = (labels == label).nonzero().flatten().tolist()
        chosen += where[: count // 10]
    pixels = ((images[chosen, 0] + 1) * 127.5).round().byte().numpy()
    return [Image.fromarray(p, mode="L") for p in pixels], [int(labels[i]) for i in chosen]


def request(server: ModelServer, image: Image.Image, text: str, **sampling: Any) -> Any:
    parts = [
        {"type": "text", "text": text},
        {"type": "image_url", "image_url": {"url": data_url(image)}},
    ]
    body = {"model": server.name, "messages": [{"role": "user", "content": parts}]}
    return ChatCompletionRequest.model_validate({**body, "temperature": 0, **sampling})


async def answers(
    server: ModelServer, asks: list[ChatCompletionRequest], concurrency: int
) -> list[str]:
    """Each request's answer, `concurrency` at a time (the engine batches them)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(body: ChatCompletionRequest) -> str:
        async with gate:
            response = await server.chat(body)
        assert isinstance(response, ChatCompletionResponse)
        return response.choices[0].message.content or ""

    return list(await asyncio.gather(*(one(b) for b in asks)))


def said_yes(answer: str) -> bool | None:
    first = answer.strip().lower().lstrip("\"'*").split(maxsplit=1)
    word = first[0].strip(".,!") if first else ""
    return True if word == "yes" else False if word == "no" else None


async def accuracy(server: ModelServer, count: int, concurrency: int) -> dict[str, Any]:
    images, labels = test_images(count)
    assert server.vision is not None
    batch = torch.stack([to_model_input(image.convert("RGB")) for image in images])
    ceiling = float(
        (server.vision.adapter.classify(batch).argmax(1) == torch.tensor(labels)).float().mean()
    )
    started = time.perf_counter()
    said = await answers(
        server, [request(server, i, QUESTION, max_tokens=16) for i in images], concurrency
    )
    seconds = time.perf_counter() - started
    named = [garment_named(a) for a in said]
    right = [n == label for n, label in zip(named, labels, strict=True)]
    per_class = {
        CLASS_NAMES[c]: round(
            float(np.mean([r for r, label in zip(right, labels, strict=True) if label == c])), 3
        )
        for c in range(10)
    }
    # yes/no: even images asked about their own garment, odd ones about another
    asked = [label if i % 2 == 0 else (label + 1 + i % 9) % 10 for i, label in enumerate(labels)]
    yes_no = await answers(
        server,
        [
            request(server, img, f"Is this a {CLASS_NAMES[a]}?", max_tokens=8)
            for img, a in zip(images, asked, strict=True)
        ],
        concurrency,
    )
    yes_right = [
        said_yes(a) == (q == label) for a, q, label in zip(yes_no, asked, labels, strict=True)
    ]
    return {
        "images": len(images),
        "answer_accuracy": round(float(np.mean(right)), 4),
        "encoder_ceiling": round(ceiling, 4),
        "named_nothing": sum(n is None for n in named),
        "per_class": per_class,
        "yes_no_accuracy": round(float(np.mean(yes_right)), 4),
        "answers_per_s": round(len(images) / seconds, 2),
        "examples": [
            {"label": CLASS_NAMES[label], "answer": a}
            for a, label in list(zip(said, labels, strict=True))[:: max(1, len(said) // 10)]
        ],
    }


async def round_trip(server: ModelServer, per_prompt: int, concurrency: int) -> dict[str, Any]:
    studio = load_studio(CreativeSettings(threads=2))
    judge = FashionJudge.load(CREATIVE_ARTEFACTS / "judge")
    drawn: list[tuple[int, Image.Image]] = []
    for label, name in enumerate(CLASS_NAMES):
        for j, prompt in enumerate(EVAL_PROMPTS[name]):
            job = GenerationJob(
                prompt,
                per_prompt,
                256,
                "diffusion",
                25,
                1.5,
                "ddim",
                100 * label + j,
            )
            for png in studio.generate(job).pngs:
                drawn.append((label, Image.open(io.BytesIO(png)).convert("RGB")))
    with torch.no_grad():
        judged = [int(judge(image_to_judge_input(img)).argmax()) for _, img in drawn]
    said = await answers(
        server,
        [request(server, img, "What did you draw?", max_tokens=16) for _, img in drawn],
        concurrency,
    )
    named = [garment_named(a) for a in said]
    labels = [label for label, _ in drawn]
    return {
        "images": len(drawn),
        "caption_names_prompt": round(
            float(np.mean([n == y for n, y in zip(named, labels, strict=True)])), 4
        ),
        "judge_names_prompt": round(
            float(np.mean([j == y for j, y in zip(judged, labels, strict=True)])), 4
        ),
        "caption_agrees_with_judge": round(
            float(np.mean([n == j for n, j in zip(named, judged, strict=True)])), 4
        ),
    }


async def costs(server: ModelServer, rounds: int) -> dict[str, Any]:
    assert server.vision is not None
    image, _ = test_images(10)
    picture = image[0].convert("RGB")
    batch = to_model_input(picture)[None]
    server.vision.adapter.embed(batch)  # warm
    started = time.perf_counter()
    for _ in range(rounds):
        server.vision.adapter.embed(batch)
    encode_ms = (time.perf_counter() - started) / rounds * 1000

    async def timed(body: ChatCompletionRequest) -> float:
        started = time.perf_counter()
        await server.chat(body)
        return time.perf_counter() - started

    text_only = ChatCompletionRequest.model_validate(
        {
            "model": server.name,
            "messages": [{"role": "user", "content": QUESTION}],
            "max_tokens": 1,
            "temperature": 0,
        }
    )
    with_image = request(server, picture, QUESTION, max_tokens=1)
    long = request(server, picture, QUESTION, max_tokens=65, ignore_eos=True)
    first_text = [await timed(text_only) for _ in range(rounds)]
    first_image = [await timed(with_image) for _ in range(rounds)]
    whole = [await timed(long) for _ in range(rounds)]
    decode = 64 / (statistics.median(whole) - statistics.median(first_image))
    return {
        "tokens_per_image": server.vision.tokens_per_image,
        "encode_ms_per_image": round(encode_ms, 2),
        "ttft_text_ms_p50": round(statistics.median(first_text) * 1000, 1),
        "ttft_image_ms_p50": round(statistics.median(first_image) * 1000, 1),
        "decode_tokens_per_s_after_image": round(decode, 1),
    }


async def _keep(report: dict[str, Any], section: str) -> None:
    """Print a section as it is measured and write the report so far (a cut run keeps it)."""
    print(section, json.dumps(report[section]), flush=True)
    await asyncio.to_thread(OUT.write_text, json.dumps(report, indent=2) + "\n")


async def main(args: argparse.Namespace) -> dict[str, Any]:
    settings = MoeSettings(data_dir=Path("var"), dtype=args.dtype, max_batch_size=args.concurrency)
    server = load_model_server(settings, None)
    if server.vision is None:
        raise SystemExit("moe_svc loaded no vision adapter: see the log above for why")
    server.engine.start()
    try:
        report: dict[str, Any] = {
            "model": server.name,
            "dtype": args.dtype,
            "adapter": server.vision.adapter.meta,
        }
        OUT.parent.mkdir(parents=True, exist_ok=True)
        report["costs"] = await costs(server, args.rounds)
        await _keep(report, "costs")
        report["round_trip"] = await round_trip(server, args.per_prompt, args.concurrency)
        await _keep(report, "round_trip")
        report["test_images"] = await accuracy(server, args.images, args.concurrency)
        await _keep(report, "test_images")
    finally:
        server.engine.stop()
    return report


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000, help="test images (a multiple of 10)")
    parser.add_argument("--per-prompt", type=int, default=4, help="drawings per round-trip prompt")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of each cost")
    parser.add_argument("--dtype", default="auto", help="moe_svc's MOE_DTYPE")
    args = parser.parse_args()
    report = asyncio.run(main(args))
    shown = {k: v for k, v in report.items() if k != "adapter"}
    print(json.dumps(shown, indent=2))
    print(f"written: {OUT}")


if __name__ == "__main__":
    cli()
