"""Constrained decoding's cost in moe_svc, and how well `tool_choice: "auto"` chooses.

    .venv/bin/python -m bench.moe_structured             # a few minutes on 2 cores
    .venv/bin/python -m bench.moe_structured --url http://127.0.0.1:PORT   # a running moe_svc

In one run, against moe_svc serving the default model (started here as a real
server unless `--url` is given):

1. `tool_choice: "auto"` on a small hand-written set (questions the weather or time
   tools answer, and questions they do not), all in one batch: how often the model
   calls a tool exactly when it should (`--choice-only` stops here);
2. decode speed with and without a schema: 1 and 8 streaming clients each asking
   `/v1/chat/completions` for `--tokens` tokens, unconstrained (`ignore_eos`) and
   with `response_format` json_schema (an object with one long string, so that the
   grammar lets the model write until `max_tokens`); aggregate completion tokens/s
   and the ratio constrained / unconstrained; then 1 constrained client among 7
   unconstrained ones, and the unconstrained clients' tokens/s next to 8 alone
   (what a constrained neighbour costs the others).

Each speed measurement runs `--repeats` times and the best is kept.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.servers import REPO_ROOT, RunningServer, start_service, wait_ready
from tests.integration.gateway_support import WEATHER_TOOL

STORY = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "story": {"type": "string"}},
    "required": ["title", "story"],
    "additionalProperties": False,
}
TOOLS = [
    WEATHER_TOOL,
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current local time in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
]
# (question, whether a tool should be called)
CHOICE_SET = [
    ("What's the weather like in Paris right now?", True),
    ("Is it raining in London today?", True),
    ("How warm is it in Madrid at the moment?", True),
    ("What time is it in Tokyo?", True),
    ("Tell me the current time in New York.", True),
    ("Weather forecast for Berlin, please.", True),
    ("Do I need an umbrella in Seattle today?", True),
    ("What is the local time in Sydney now?", True),
    ("What is the capital of France?", False),
    ("Write a haiku about the sea.", False),
    ("How many legs does a spider have?", False),
    ("Give me one tip for learning to cook.", False),
    ("What is 12 times 7?", False),
    ("Who wrote Romeo and Juliet?", False),
    ("Translate 'thank you' into Spanish.", False),
    ("Name three fruits.", False),
]


async def _stream(
    client: httpx.AsyncClient, model: str, tokens: int, constrained: bool, index: int
) -> int:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "user", "content": f"Write a long story about traveller number {index}."}
        ],
        "max_tokens": tokens,
        "temperature": 0.8,
        "seed": index,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if constrained:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "story", "schema": STORY},
        }
    else:
        body["ignore_eos"] = True
    completion = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                if usage:
                    completion = usage["completion_tokens"]
    return completion


async def _speed(url: str, model: str, tokens: int, mix: list[bool]) -> list[float]:
    """Tokens/s of each client (constrained or not), all started together."""
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        started = time.perf_counter()

        async def timed(i: int, constrained: bool) -> float:
            count = await _stream(client, model, tokens, constrained, i)
            return count / (time.perf_counter() - started)

        return list(await asyncio.gather(*(timed(i, c) for i, c in enumerate(mix))))


def best_speed(url: str, model: str, tokens: int, mix: list[bool], repeats: int) -> list[float]:
    runs = [asyncio.run(_speed(url, model, tokens, mix)) for _ in range(repeats)]
    return max(runs, key=sum)


def tool_choice_accuracy(url: str, model: str) -> tuple[int, int, list[str]]:
    """All questions at once (one batch); right when a tool is called exactly when it should."""

    async def ask(client: httpx.AsyncClient, question: str) -> bool:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": question}],
            "tools": TOOLS,
            "tool_choice": "auto",
            "temperature": 0,
            "max_tokens": 32,
        }
        reply = (await client.post("/v1/chat/completions", json=body)).json()
        return bool(reply["choices"][0]["message"].get("tool_calls"))

    async def ask_all() -> list[bool]:
        async with httpx.AsyncClient(base_url=url, timeout=900) as client:
            return list(await asyncio.gather(*(ask(client, q) for q, _ in CHOICE_SET)))

    called = asyncio.run(ask_all())
    wrong = [q for (q, should), c in zip(CHOICE_SET, called, strict=True) if c != should]
    return len(CHOICE_SET) - len(wrong), len(CHOICE_SET), wrong


def run(url: str, tokens: int, repeats: int, speed: bool = True) -> None:
    model = httpx.get(url + "/v1/models").json()["data"][0]["id"]
    right, total, wrong = tool_choice_accuracy(url, model)
    print(f"tool_choice auto: {right}/{total} chosen right; wrong: {wrong}")
    if not speed:
        return
    print(f"model {model}, {tokens} tokens per client, best of {repeats}")
    print("| clients | unconstrained tok/s | json_schema tok/s | ratio |")
    print("|---|---|---|---|")
    for clients in (1, 8):
        free = sum(best_speed(url, model, tokens, [False] * clients, repeats))
        bound = sum(best_speed(url, model, tokens, [True] * clients, repeats))
        print(f"| {clients} | {free:.1f} | {bound:.1f} | {bound / free:.3f} |")
    alone = best_speed(url, model, tokens, [False] * 8, repeats)
    mixed = best_speed(url, model, tokens, [True] + [False] * 7, repeats)
    neighbours = sum(mixed[1:]) / sum(alone[1:])
    print(f"7 unconstrained clients beside 1 constrained / beside 8 alone: {neighbours:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running moe_svc (else one is started here)")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--choice-only", action="store_true", help="skip the speed part")
    args = parser.parse_args()
    if args.url:
        run(args.url, args.tokens, args.repeats, not args.choice_only)
        return
    logs = Path(tempfile.mkdtemp(prefix="moe_structured_"))
    server: RunningServer = start_service(
        "moe_svc", logs, env={"MOE_DATA_DIR": str(REPO_ROOT / "var")}
    )
    try:
        wait_ready(server, timeout_s=900)
        run(server.url, args.tokens, args.repeats, not args.choice_only)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
