"""Ideation with and without constrained decoding, on the real default model.

    .venv/bin/python -m bench.ideation_eval [--tasks 12] [--n 3]

creative_svc's ideation asks moe_svc for n ideas, each with a visual the image
models can draw. Before, the model wrote labelled lines ("Idea:/Visual:/Why:")
that a parser read; now it answers under a JSON schema whose grammar (moe_svc's
constrained decoding) makes every answer n complete ideas with drawable visuals.
Both run here in one process against one moe_svc, through `Ideator.draft` with
the real prompt reader: per mode, the share of tasks whose n ideas all came from
the model (the rest are filled in by the fallback), ideas per task, complete ideas
(a reason given), distinct garments drawn and seconds per task.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common.chat import ChatClient
from common.http_client import ServiceClient
from creative_svc.app import load_studio
from creative_svc.ideation import Ideator
from creative_svc.settings import CreativeSettings
from moe_svc.build_default import build
from tests.helpers.servers import start_service, wait_ready

TASKS = [
    "clothes for a rainy day in the city",
    "an outfit for a summer wedding on the beach",
    "gifts for someone who travels a lot",
    "a school uniform that children would enjoy",
    "winter clothes for cycling to work",
    "a costume for a science fiction film",
    "clothes for a night out dancing",
    "practical wear for gardeners",
    "an outfit for a job interview at a bank",
    "shoes for people who walk all day",
    "a collection inspired by the ocean",
    "clothing for a music festival in the mud",
    "a capsule wardrobe for a week of business travel",
    "sportswear made from recycled materials",
    "a cosy outfit for reading at home",
    "accessories for a hiking trip",
]


async def run_mode(
    ideator: Ideator, tasks: list[str], n: int, constrained: bool
) -> dict[str, float]:
    ideator.constrained = constrained
    full, counts, complete, garments, seconds = 0, [], 0, set(), []
    for task in tasks:
        started = time.perf_counter()
        drafts = await ideator.draft(task, n)
        seconds.append(time.perf_counter() - started)
        print(
            f"{'constrained' if constrained else 'labelled lines'}: {len(drafts)} ideas "
            f"in {seconds[-1]:.1f} s for {task!r}",
            file=sys.stderr,
            flush=True,
        )
        counts.append(len(drafts))
        full += len(drafts) == n
        complete += sum(bool(d.why) for d in drafts)
        for d in drafts:
            garments.add(ideator.studio.read_prompt(d.visual_concept)[1].nearest_class)
    return {
        "all_from_model": full / len(tasks),
        "ideas_per_task": statistics.mean(counts),
        "with_reason": complete / max(1, sum(counts)),
        "garments": float(len(garments)),
        "seconds_per_task": statistics.mean(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--n", type=int, default=3)
    args = parser.parse_args()
    build(args.data_dir / "models")
    env = {"MOE_DATA_DIR": str(args.data_dir.resolve()), "MOE_LOG_LEVEL": "WARNING"}
    server = start_service("moe_svc", Path(tempfile.mkdtemp(prefix="ideation_")), env=env)
    try:
        wait_ready(server, timeout_s=600)
        settings = CreativeSettings()
        upstream = ServiceClient("moe_svc", server.url)
        chat = ChatClient(upstream, timeout_s=300)
        ideator = Ideator(
            chat,
            load_studio(settings),
            steps=settings.default_steps,
            guidance_scale=settings.default_guidance_scale,
            max_tokens=settings.ideate_max_tokens,
            temperature=settings.ideate_temperature,
        )
        tasks = TASKS[: args.tasks]

        async def both() -> dict[str, dict[str, float]]:
            # One event loop for both modes: the client's connections belong to it.
            try:
                return {
                    mode: await run_mode(ideator, tasks, args.n, mode == "constrained")
                    for mode in ("labelled lines", "constrained")
                }
            finally:
                await upstream.aclose()

        results = asyncio.run(both())
    finally:
        server.stop()
    print(f"## Ideation, {len(tasks)} tasks, n={args.n}, temperature {ideator.temperature}")
    print("| mode | all n from the model | ideas/task | with a reason | garments | s/task |")
    print("|---|---|---|---|---|---|")
    for mode, r in results.items():
        print(
            f"| {mode} | {r['all_from_model']:.0%} | {r['ideas_per_task']:.2f} | "
            f"{r['with_reason']:.0%} | {r['garments']:.0f} | {r['seconds_per_task']:.1f} |"
        )


if __name__ == "__main__":
    main()
